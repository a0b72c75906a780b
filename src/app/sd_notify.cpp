#include "app/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

namespace inferq::app {

SystemdNotifier::SystemdNotifier(std::string socket, std::chrono::microseconds watchdog)
    : socket_(std::move(socket)), watchdog_(watchdog) {}

SystemdNotifier SystemdNotifier::from_environment() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  std::chrono::microseconds watchdog{0};
  if (usec != nullptr) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(usec, &end, 10);
    // WATCHDOG_PID names the process systemd watches; a forked child that
    // inherited the variables must not ping in its parent's name.
    const bool ours = pid == nullptr || std::to_string(::getpid()) == pid;
    if (errno == 0 && end != usec && *end == '\0' && v > 0 && ours) watchdog = std::chrono::microseconds(v);
  }
  SystemdNotifier n(socket != nullptr ? socket : "", watchdog);
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  ::unsetenv("WATCHDOG_PID");
  return n;
}

std::optional<std::chrono::microseconds> SystemdNotifier::watchdog_timeout() const {
  if (!enabled() || watchdog_.count() <= 0) return std::nullopt;
  return watchdog_;
}

bool SystemdNotifier::notify(std::string_view state) noexcept {
  if (!enabled()) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // "@name" is the abstract namespace: a leading NUL, and the length counts
  // exactly the name's bytes (no terminator).
  if (socket_.size() >= sizeof addr.sun_path || (socket_[0] != '/' && socket_[0] != '@')) return false;
  std::memcpy(addr.sun_path, socket_.data(), socket_.size());
  if (socket_[0] == '@') addr.sun_path[0] = '\0';
  const auto len =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size() + (socket_[0] == '@' ? 0 : 1));
  if (!fd_) fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd_) return false;
  ssize_t n;
  do {
    n = ::sendto(fd_.get(), state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                 reinterpret_cast<const sockaddr*>(&addr), len);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(state.size());
}

bool SystemdNotifier::ready(std::string_view status) noexcept {
  try {
    return notify("READY=1\nSTATUS=" + std::string(status));
  } catch (...) {  // std::bad_alloc: the message is not worth a crash
    return false;
  }
}

bool SystemdNotifier::status(std::string_view status) noexcept {
  try {
    return notify("STATUS=" + std::string(status));
  } catch (...) {
    return false;
  }
}

bool SystemdNotifier::stopping(std::string_view status) noexcept {
  try {
    return notify("STOPPING=1\nSTATUS=" + std::string(status));
  } catch (...) {
    return false;
  }
}

bool SystemdNotifier::watchdog_tick(std::chrono::steady_clock::time_point now) noexcept {
  if (!watchdog_timeout()) return false;
  if (last_ping_ && now - *last_ping_ < watchdog_ / 2) return false;
  last_ping_ = now;
  return notify("WATCHDOG=1");
}

}  // namespace inferq::app
