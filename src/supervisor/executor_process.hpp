#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "protocol/channel.hpp"
#include "util/fd.hpp"

namespace inferq::supervisor {

// What the supervisor sets on top of its own environment for an executor of
// `threads` intra-op threads: OMP/MKL/OPENBLAS_NUM_THREADS (read when those
// libraries load, before the executor's own set-up), and glibc's
// malloc.hugetlb=1, which makes malloc ask for transparent huge pages
// (glibc 2.35 and later; THP in the kernel's default madvise mode): a
// model's weights and activations then cost far fewer TLB misses, and a
// forward is as fast in every executor instead of fast or 1.6x slower by the
// luck of its addresses (BENCHMARKS.md, issue 12). `glibc_tunables` is the
// supervisor's own GLIBC_TUNABLES (nullptr: unset): a value that names
// glibc.malloc.hugetlb is kept as it is (the operator's opt-out), another
// gets the setting appended.
std::vector<std::string> executor_environment(int threads, const char* glibc_tunables);

// One inferq-executor child: fork+exec'd with the child end of a socketpair
// as fd 3, and a pidfd so its exit can be poll()ed. The destructor kills and
// reaps it, so a child never outlives its owner or stays a zombie.
class ExecutorProcess {
 public:
  // Starts argv[0] (a path) with the given arguments, in this process's
  // environment with `env` ("NAME=value" each) set on top: it must be in
  // place at exec, as libraries such as OpenBLAS read it when they load.
  // The database's variables (INFERQ_DATABASE_URL and libpq's PG*) are left
  // out: model code has no business with the DSN or its password.
  // Throws std::system_error when the socketpair, pidfd or fork fails; a
  // failed exec shows up as the child exiting with code 127.
  static std::unique_ptr<ExecutorProcess> spawn(const std::vector<std::string>& argv,
                                                const std::vector<std::string>& env = {});

  ~ExecutorProcess();
  ExecutorProcess(const ExecutorProcess&) = delete;
  ExecutorProcess& operator=(const ExecutorProcess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  int socket_fd() const noexcept { return socket_.get(); }
  int pid_fd() const noexcept { return pid_fd_.get(); }

  // SIGKILL; harmless when it has already exited.
  void kill() noexcept;
  // Reaps the child if it has exited; returns its wait status. Never blocks.
  std::optional<int> try_reap() noexcept;
  bool reaped() const noexcept { return reaped_; }

  protocol::FrameReader reader;
  protocol::FrameWriter writer;

 private:
  ExecutorProcess(pid_t pid, util::UniqueFd socket, util::UniqueFd pid_fd);
  pid_t pid_;
  util::UniqueFd socket_;
  util::UniqueFd pid_fd_;
  bool reaped_ = false;
};

// "exited with code 3", "killed by signal 6 (SIGABRT)".
std::string describe_wait_status(int status);

}  // namespace inferq::supervisor
