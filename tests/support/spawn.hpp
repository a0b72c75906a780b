#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

// Process plumbing shared by ChildProcess and PgCluster. posix_spawn only:
// the tests are multi-threaded, and nothing runs between fork and exec.
namespace inferq::test::detail {

struct SpawnSpec {
  std::vector<std::string> argv;           // argv[0] is looked up in PATH when it has no '/'
  std::map<std::string, std::string> env;  // set on top of this process's environment
  std::string cwd;                         // empty: this process's
  int input_fd = -1;                       // stdin; -1: /dev/null
  int output_fd = -1;                      // stdout and stderr; -1: /dev/null
  bool new_process_group = false;          // the child leads a process group of its own
};

// Starts the program with default signal dispositions, an empty signal mask
// and no descriptors but 0, 1 and 2. Throws std::runtime_error naming the
// command when it cannot be started.
pid_t spawn(const SpawnSpec& spec);

// The raw wait status once `pid` has exited (and reaps it), nullopt while it
// runs. -1 when it is no child of ours any more (someone else reaped it).
std::optional<int> try_reap(pid_t pid);

// try_reap every 10 ms until `timeout`. Blocks the calling thread.
std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds timeout);

// Runs the command to completion and returns its stdout+stderr. Throws
// std::runtime_error with the command and its output when it does not exit
// 0 within `timeout` (it is killed then). spec.output_fd is ignored.
std::string run_checked(SpawnSpec spec, std::chrono::milliseconds timeout);

// "exited with status 3", "killed by signal 9 (Killed)".
std::string describe_status(int status);

// Who a command runs as: this process's user, or, from root, an
// unprivileged one (through setpriv).
struct RunAs {
  bool drop = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
};

// argv prefixed with setpriv when `who` drops privileges.
std::vector<std::string> as_user(const RunAs& who, std::vector<std::string> argv);

// The command as one would type it, for messages.
std::string command_line(const std::vector<std::string>& argv);

}  // namespace inferq::test::detail
