#include "support/spawn.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "support/test_env.hpp"

extern char** environ;

namespace inferq::test::detail {
namespace {

// RAII for the posix_spawn attribute objects.
struct SpawnAttrs {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnAttrs() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnAttrs() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnAttrs(const SpawnAttrs&) = delete;
  SpawnAttrs& operator=(const SpawnAttrs&) = delete;
};

void check(int rc, const char* what) {
  if (rc != 0) throw std::system_error(rc, std::generic_category(), what);
}

}  // namespace

pid_t spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) throw std::invalid_argument("spawn: empty argv");

  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq != nullptr) env.emplace(std::string(*e, static_cast<std::size_t>(eq - *e)), std::string(eq + 1));
  }
  for (const auto& [key, value] : spec.env) env[key] = value;
  std::vector<std::string> env_strings;
  env_strings.reserve(env.size());
  for (const auto& [key, value] : env) env_strings.push_back(key + "=" + value);

  std::vector<char*> argv;
  for (const std::string& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& entry : env_strings) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  SpawnAttrs s;
  if (spec.input_fd >= 0) {
    check(posix_spawn_file_actions_adddup2(&s.actions, spec.input_fd, 0), "posix_spawn dup2 stdin");
  } else {
    check(posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0),
          "posix_spawn open stdin");
  }
  if (spec.output_fd >= 0) {
    check(posix_spawn_file_actions_adddup2(&s.actions, spec.output_fd, 1), "posix_spawn dup2 stdout");
  } else {
    check(posix_spawn_file_actions_addopen(&s.actions, 1, "/dev/null", O_WRONLY, 0),
          "posix_spawn open stdout");
  }
  check(posix_spawn_file_actions_adddup2(&s.actions, 1, 2), "posix_spawn dup2 stderr");
  // Nothing of ours leaks into the child: not ctest's pipes, not sockets.
  check(posix_spawn_file_actions_addclosefrom_np(&s.actions, 3), "posix_spawn closefrom");
  if (!spec.cwd.empty()) {
    check(posix_spawn_file_actions_addchdir_np(&s.actions, spec.cwd.c_str()), "posix_spawn chdir");
  }

  // A test thread may block signals (a daemon's signal thread does); the
  // child must not inherit that.
  sigset_t empty;
  sigset_t all;
  sigemptyset(&empty);
  sigfillset(&all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  check(posix_spawnattr_setsigmask(&s.attr, &empty), "posix_spawnattr_setsigmask");
  check(posix_spawnattr_setsigdefault(&s.attr, &all), "posix_spawnattr_setsigdefault");
  if (spec.new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    check(posix_spawnattr_setpgroup(&s.attr, 0), "posix_spawnattr_setpgroup");
  }
  check(posix_spawnattr_setflags(&s.attr, flags), "posix_spawnattr_setflags");

  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, argv[0], &s.actions, &s.attr, argv.data(), envp.data());
  if (rc != 0) {
    throw std::runtime_error("cannot start " + command_line(spec.argv) + ": " + std::strerror(rc) +
                             (spec.cwd.empty() ? "" : " (in " + spec.cwd + ")"));
  }
  return pid;
}

std::optional<int> try_reap(pid_t pid) {
  int status = 0;
  for (;;) {
    const pid_t rc = ::waitpid(pid, &status, WNOHANG);
    if (rc == pid) return status;
    if (rc == 0) return std::nullopt;
    if (errno == EINTR) continue;
    return -1;
  }
}

std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto status = try_reap(pid)) return status;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string run_checked(SpawnSpec spec, std::chrono::milliseconds timeout) {
  const std::string base = test_tmp_base();
  int fd = ::open(base.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "open O_TMPFILE in " + base);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  spec.output_fd = fd;
  const pid_t pid = spawn(spec);
  std::optional<int> status = wait_for_exit(pid, timeout);
  if (!status) {
    ::kill(pid, SIGKILL);
    status = wait_for_exit(pid, std::chrono::seconds(10));
  }

  std::string output;
  char buffer[4096];
  ::lseek(fd, 0, SEEK_SET);
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      output.append(buffer, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }

  if (!status || !WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    const std::string what = status ? describe_status(*status)
                                    : "did not finish within " + std::to_string(timeout.count()) + " ms";
    throw std::runtime_error(command_line(spec.argv) + " " + what + ":\n" + output);
  }
  return output;
}

std::string describe_status(int status) {
  if (status == -1) return "was reaped by someone else";
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    return "killed by signal " + std::to_string(sig) +
           (name != nullptr ? std::string(" (") + name + ")" : "");
  }
  return "ended with wait status " + std::to_string(status);
}

std::vector<std::string> as_user(const RunAs& who, std::vector<std::string> argv) {
  if (!who.drop) return argv;
  std::vector<std::string> out{"setpriv", "--reuid=" + std::to_string(who.uid),
                               "--regid=" + std::to_string(who.gid), "--clear-groups", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::string command_line(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& arg : argv) {
    if (!out.empty()) out += ' ';
    if (!arg.empty() && arg.find_first_of(" \t\n'\"\\$`;&|<>*?()") == std::string::npos) {
      out += arg;
      continue;
    }
    out += '\'';
    for (char c : arg) {
      if (c == '\'') {
        out += "'\\''";
      } else {
        out += c;
      }
    }
    out += '\'';
  }
  return out;
}

}  // namespace inferq::test::detail
