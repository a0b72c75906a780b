#include "supervisor/executor_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace inferq::supervisor {
namespace {

constexpr int kChildFd = 3;

[[noreturn]] void child_exec(int sock, char* const* argv, char* const* envp) {
  // Only async-signal-safe calls between fork and exec: the parent has threads.
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (sock == kChildFd) {
    fcntl(sock, F_SETFD, 0);
  } else if (dup2(sock, kChildFd) < 0) {
    _exit(127);
  }
  // Nothing of the daemon's (database sockets, other executors) leaks in.
  syscall(SYS_close_range, kChildFd + 1, ~0U, 0);
  execve(argv[0], argv, envp);
  _exit(127);
}

}  // namespace

std::vector<std::string> executor_environment(int threads, const char* glibc_tunables) {
  const std::string n = std::to_string(threads);
  std::vector<std::string> env = {"OMP_NUM_THREADS=" + n, "MKL_NUM_THREADS=" + n,
                                  "OPENBLAS_NUM_THREADS=" + n};
  const std::string huge = "glibc.malloc.hugetlb=1";
  if (glibc_tunables == nullptr || *glibc_tunables == '\0') {
    env.push_back("GLIBC_TUNABLES=" + huge);
  } else if (std::strstr(glibc_tunables, "glibc.malloc.hugetlb") == nullptr) {
    env.push_back(std::string("GLIBC_TUNABLES=") + glibc_tunables + ":" + huge);
  }
  return env;
}

ExecutorProcess::ExecutorProcess(pid_t pid, util::UniqueFd socket, util::UniqueFd pid_fd)
    : pid_(pid), socket_(std::move(socket)), pid_fd_(std::move(pid_fd)) {}

std::unique_ptr<ExecutorProcess> ExecutorProcess::spawn(const std::vector<std::string>& argv,
                                                        const std::vector<std::string>& env) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw std::system_error(errno, std::generic_category(), "socketpair");
  util::UniqueFd parent_end(sv[0]);
  util::UniqueFd child_end(sv[1]);

  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  // Built before fork: the child may only make async-signal-safe calls.
  std::vector<char*> cenv;
  const auto overridden = [&](const char* entry) {
    for (const std::string& e : env) {
      const std::size_t eq = e.find('=');
      if (std::strncmp(entry, e.c_str(), eq + 1) == 0) return true;
    }
    return false;
  };
  const auto database = [](const char* entry) {
    return std::strncmp(entry, "INFERQ_DATABASE_URL=", 20) == 0 || std::strncmp(entry, "PG", 2) == 0;
  };
  for (char** p = environ; *p != nullptr; ++p) {
    if (!overridden(*p) && !database(*p)) cenv.push_back(*p);
  }
  for (const std::string& e : env) cenv.push_back(const_cast<char*>(e.c_str()));
  cenv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid == 0) child_exec(child_end.get(), cargv.data(), cenv.data());

  child_end.reset();
  util::UniqueFd pid_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pid_fd) {
    const int err = errno;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw std::system_error(err, std::generic_category(), "pidfd_open");
  }
  ::fcntl(pid_fd.get(), F_SETFD, FD_CLOEXEC);
  ::fcntl(parent_end.get(), F_SETFL, ::fcntl(parent_end.get(), F_GETFL) | O_NONBLOCK);
  return std::unique_ptr<ExecutorProcess>(new ExecutorProcess(pid, std::move(parent_end), std::move(pid_fd)));
}

ExecutorProcess::~ExecutorProcess() {
  if (!reaped_) {
    kill();
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void ExecutorProcess::kill() noexcept {
  // The pidfd names this very process even if its pid were reused.
  if (!reaped_) ::syscall(SYS_pidfd_send_signal, pid_fd_.get(), SIGKILL, nullptr, 0);
}

std::optional<int> ExecutorProcess::try_reap() noexcept {
  if (reaped_) return std::nullopt;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return std::nullopt;
  reaped_ = true;
  return status;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) +
           (abbrev ? std::string(" (SIG") + abbrev + ")" : std::string());
  }
  return "ended with wait status " + std::to_string(status);
}

}  // namespace inferq::supervisor
