#include "support/child_process.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "support/spawn.hpp"
#include "support/test_env.hpp"

namespace inferq::test {

ChildProcess::ChildProcess(std::vector<std::string> argv, std::map<std::string, std::string> env,
                           std::string log_path)
    : argv_(std::move(argv)), log_path_(std::move(log_path)) {
  int fd = -1;
  if (log_path_.empty()) {
    std::string pattern = test_tmp_base() + "/inferq-child-XXXXXX.log";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    fd = ::mkostemps(buffer.data(), 4, O_CLOEXEC | O_APPEND);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "mkostemps " + pattern);
    log_path_ = buffer.data();
    owns_log_ = true;
  } else {
    fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "open " + log_path_);
  }

  detail::SpawnSpec spec;
  spec.argv = argv_;
  spec.env = std::move(env);
  spec.output_fd = fd;
  spec.new_process_group = true;
  try {
    pid_ = detail::spawn(spec);
  } catch (...) {
    ::close(fd);
    if (owns_log_) ::unlink(log_path_.c_str());
    throw;
  }
  ::close(fd);
}

ChildProcess::~ChildProcess() { release(); }

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : argv_(std::move(other.argv_)),
      pid_(other.pid_),
      status_(other.status_),
      log_path_(std::move(other.log_path_)),
      owns_log_(other.owns_log_) {
  other.pid_ = -1;
  other.owns_log_ = false;
}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    release();
    argv_ = std::move(other.argv_);
    pid_ = other.pid_;
    status_ = other.status_;
    log_path_ = std::move(other.log_path_);
    owns_log_ = other.owns_log_;
    other.pid_ = -1;
    other.owns_log_ = false;
  }
  return *this;
}

void ChildProcess::release() noexcept {
  if (pid_ > 0) {
    // The group outlives its leader while something it started still runs,
    // and its id cannot be reused until the group is gone.
    ::kill(-pid_, SIGKILL);
    if (!status_) {
      ::kill(pid_, SIGKILL);
      status_ = detail::wait_for_exit(pid_, std::chrono::seconds(10));
    }
  }
  pid_ = -1;
  if (owns_log_) ::unlink(log_path_.c_str());
  owns_log_ = false;
}

void ChildProcess::send_signal(int sig) {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

void ChildProcess::send_signal_group(int sig) {
  if (pid_ > 0) ::kill(-pid_, sig);
}

std::optional<int> ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (pid_ > 0 && !status_) status_ = detail::wait_for_exit(pid_, timeout);
  return status_;
}

bool ChildProcess::running() {
  if (pid_ <= 0 || status_) return false;
  status_ = detail::try_reap(pid_);
  return !status_;
}

std::string ChildProcess::log() const { return read_file(log_path_); }

bool ChildProcess::wait_log(const std::string& needle, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Whether it ran before looking: lines written just before the exit count.
    const bool was_running = running();
    if (log().find(needle) != std::string::npos) return true;
    if (!was_running || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string describe_wait_status(int status) { return detail::describe_status(status); }

bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

void run_to_success(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                    const std::string& what) {
  ChildProcess child(std::move(argv));
  const auto status = child.wait_exit(timeout);
  if (!status || !exited_with(*status, 0)) throw std::runtime_error(what + " failed:\n" + child.log());
}

}  // namespace inferq::test
