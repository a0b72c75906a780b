// Issue 12 part 3: executors start with glibc.malloc.hugetlb=1, so a model's
// memory is backed by transparent huge pages (the kernel's THP in madvise or
// always mode). Without it, a forward on the 2-core machine ran fast or 1.6x
// slower by the luck of its addresses. The real daemon and a model executor.
#include <doctest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/daemon.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

std::string value_of(const std::vector<std::string>& env, const std::string& name) {
  for (const auto& e : env)
    if (e.rfind(name + "=", 0) == 0) return e.substr(name.size() + 1);
  return "(unset)";
}

// AnonHugePages of /proc/PID/smaps_rollup, in kB; -1 when unreadable.
long anon_huge_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) return std::stol(line.substr(14));
  }
  return -1;
}

// Whether the kernel hands out transparent huge pages on madvise.
bool thp_available() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string s;
  std::getline(in, s);
  return s.find("[always]") != std::string::npos || s.find("[madvise]") != std::string::npos;
}

TestQueue encoder_queue(const std::string& models) {
  TestQueue q;
  q.name = "encoder";
  q.model = models + "/encoder.pt";
  q.max_jobs = 8;
  q.extra_yaml =
      "threads: 1\n"
      "inputs: [{name: input_ids, datatype: INT64, shape: [-1], pad: 0}]\n"
      "outputs: [{name: embedding}]\n";
  return q;
}

}  // namespace

TEST_CASE("a model executor starts with malloc's huge pages on, and its memory is in huge pages") {
  TempDir models("inferq-models");
  ChildProcess make({bin_path("inferq-executor"), "make-models", models.path()});
  const auto made = make.wait_exit(120s);
  REQUIRE((made && exited_with(*made, 0)));
  const std::string url = fresh_inferq_database();
  ::unsetenv("GLIBC_TUNABLES");
  Daemon daemon(daemon_config(url, {encoder_queue(models.path())}));
  INFO("daemon log:\n", daemon.log());
  REQUIRE(daemon.wait_ready());
  const auto pids = daemon.executor_pids();
  REQUIRE(pids.size() == 1);
  CHECK(value_of(environment_of(pids[0]), "GLIBC_TUNABLES") == "glibc.malloc.hugetlb=1");
  CHECK(value_of(environment_of(daemon.pid()), "GLIBC_TUNABLES") == "(unset)");  // the daemon's own is not
  if (!thp_available()) {
    MESSAGE("transparent huge pages are off on this kernel: the huge page check is skipped");
    return;
  }
  // The warmed-up encoder (4 layers of width 384: 28 MB of weights, and its
  // activations) holds at least one 2 MiB page.
  const long kb = anon_huge_kb(pids[0]);
  CAPTURE(kb);
  CHECK(kb >= 2048);
}

TEST_CASE("an operator's GLIBC_TUNABLES that sets hugetlb reaches the executors as it is") {
  const std::string url = fresh_inferq_database();
  ::setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=0", 1);
  Daemon daemon(daemon_config(url, {test_queue("echo", "builtin:echo", 1, 4)}));
  ::unsetenv("GLIBC_TUNABLES");
  INFO("daemon log:\n", daemon.log());
  REQUIRE(daemon.wait_ready());
  const auto pids = daemon.executor_pids();
  REQUIRE(pids.size() == 1);
  CHECK(value_of(environment_of(pids[0]), "GLIBC_TUNABLES") == "glibc.malloc.hugetlb=0");
}
