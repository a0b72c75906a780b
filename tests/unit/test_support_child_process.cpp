// The harness's child processes: exit status, signals, logs, cleanup.
#include <doctest.h>

#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "support/child_process.hpp"
#include "support/test_env.hpp"

namespace {

using inferq::test::ChildProcess;
using namespace std::chrono_literals;

}  // namespace

TEST_CASE("exit status, environment and log") {
  ChildProcess child({"/bin/sh", "-c", "echo out $GREETING; echo err >&2; exit 3"}, {{"GREETING", "hello"}});
  const auto status = child.wait_exit(10s);
  REQUIRE(status);
  CHECK(inferq::test::exited_with(*status, 3));
  CHECK_FALSE(child.running());
  CHECK(child.log() == "out hello\nerr\n");
  CHECK(child.wait_exit(0ms) == status);
  CHECK(inferq::test::describe_wait_status(*status) == "exited with status 3");
}

TEST_CASE("signals and timeouts") {
  ChildProcess child(
      {"/bin/sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.01; done"});
  REQUIRE(child.wait_log("ready", 10s));
  CHECK(child.running());
  CHECK_FALSE(child.wait_exit(50ms));
  child.send_signal(SIGTERM);
  const auto status = child.wait_exit(10s);
  REQUIRE(status);
  CHECK(inferq::test::exited_with(*status, 0));
  CHECK(child.log().find("got TERM") != std::string::npos);
  CHECK_FALSE(child.wait_log("never printed", 10s));  // returns at once: it has exited
}

TEST_CASE("the destructor kills the whole process group") {
  inferq::test::TempDir tmp;
  const std::string pid_file = tmp.file("grandchild.pid");
  pid_t grandchild = 0;
  {
    ChildProcess child({"/bin/sh", "-c", "sleep 300 & echo $! > " + pid_file + "; wait"}, {},
                       tmp.file("log"));
    REQUIRE(inferq::test::wait_until(
        [&] {
          std::error_code ec;
          return std::filesystem::file_size(pid_file, ec) > 0 && !ec;
        },
        10s));
    std::ifstream in(pid_file);
    in >> grandchild;
    REQUIRE(grandchild > 0);
    CHECK(::kill(grandchild, 0) == 0);
  }
  // The grandchild was killed; as our process's grandchild it is reaped by
  // whoever adopted it, which may take a moment.
  CHECK(inferq::test::wait_until(
      [&] {
        std::ifstream stat("/proc/" + std::to_string(grandchild) + "/stat");
        std::string pid, comm, state;
        return !(stat >> pid >> comm >> state) || state == "Z";
      },
      10s));
  CHECK(std::filesystem::exists(tmp.file("log")));  // a given log file is kept
}

TEST_CASE("a program that does not exist") {
  CHECK_THROWS_AS(ChildProcess({"/nonexistent/program"}), std::runtime_error);
}

TEST_CASE("move keeps one owner") {
  ChildProcess a({"/bin/sh", "-c", "exit 7"});
  ChildProcess b(std::move(a));
  const auto status = b.wait_exit(10s);
  REQUIRE(status);
  CHECK(inferq::test::exited_with(*status, 7));
  CHECK(a.pid() == -1);  // NOLINT(bugprone-use-after-move): checking the moved-from state
}

TEST_CASE("wait_until") {
  int calls = 0;
  CHECK(inferq::test::wait_until([&] { return ++calls == 3; }, 10s, 1ms));
  CHECK(calls == 3);
  CHECK_FALSE(inferq::test::wait_until([] { return false; }, 30ms, 5ms));
}
