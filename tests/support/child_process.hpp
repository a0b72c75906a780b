#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace inferq::test {

// A program the test started (a daemon, a CLI command), with its stdout and
// stderr going to one log file. It leads a process group of its own, so the
// destructor also kills what it started (executors). Not thread-safe: one
// test thread drives it. Move-only.
class ChildProcess {
 public:
  // Starts argv (argv[0] looked up in PATH when it has no '/') with `env`
  // set on top of this process's environment, stdin from /dev/null. The log
  // goes to `log_path` (truncated), or to a temporary file removed with this
  // object when empty. Throws std::runtime_error when it cannot start.
  explicit ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> env = {},
                        std::string log_path = {});
  // SIGKILLs the process group if still there and reaps the child.
  ~ChildProcess();
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  // Sends `sig` to the child (kill(2)); a no-op once it has been reaped.
  void send_signal(int sig);
  // Sends `sig` to the child's whole process group (it and what it started).
  void send_signal_group(int sig);

  // Waits up to `timeout` (polling every 10 ms) for the child to exit and
  // returns its raw wait status (use WIFEXITED etc.), nullopt on timeout.
  // Returns the same status again on later calls.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);

  // True while the child has not exited (reaps it when it has).
  bool running();

  // The raw wait status once the child has been reaped.
  std::optional<int> exit_status() const { return status_; }

  // The whole log so far.
  std::string log() const;
  const std::string& log_path() const { return log_path_; }

  // Polls the log every 20 ms until it contains `needle` (true) or `timeout`
  // passes (false). Returns false early when the child has exited and the
  // log does not have it.
  bool wait_log(const std::string& needle, std::chrono::milliseconds timeout);

 private:
  void release() noexcept;

  std::vector<std::string> argv_;
  pid_t pid_ = -1;  // -1 once moved from
  std::optional<int> status_;
  std::string log_path_;
  bool owns_log_ = false;
};

// "exited with status 0", "killed by signal 9 (Killed)": for messages.
std::string describe_wait_status(int status);

// True when the raw wait status says the process exited with `code`.
bool exited_with(int status, int code);

// Runs `argv` to its exit (at most `timeout`); throws std::runtime_error
// "`what` failed:" and the child's log unless it exited 0. For the tools a
// test or benchmark needs first (making models).
void run_to_success(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                    const std::string& what);

}  // namespace inferq::test
