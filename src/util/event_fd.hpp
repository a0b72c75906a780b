#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

#include "util/fd.hpp"

namespace inferq::util {

// A wake-up signal one thread can send and another can poll() on along with
// its other descriptors. notify() is thread-safe and never blocks.
class EventFd {
 public:
  EventFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
    if (!fd_) throw std::system_error(errno, std::generic_category(), "eventfd");
  }
  int fd() const noexcept { return fd_.get(); }
  void notify() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(fd_.get(), &one, sizeof one);
  }
  // Clears pending notifications; returns true if there were any.
  bool drain() noexcept {
    std::uint64_t v = 0;
    return ::read(fd_.get(), &v, sizeof v) == static_cast<ssize_t>(sizeof v);
  }

 private:
  UniqueFd fd_;
};

}  // namespace inferq::util
