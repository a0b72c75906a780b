#include "util/fd.hpp"

#include <unistd.h>

#include <utility>

namespace inferq::util {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int UniqueFd::release() noexcept { return std::exchange(fd_, -1); }

void UniqueFd::reset(int fd) noexcept {
  if (fd == fd_) return;
  const int old = std::exchange(fd_, fd);
  // No retry on EINTR: Linux frees the descriptor even then, and closing it
  // again could close one another thread has just been given.
  if (old >= 0) ::close(old);
}

}  // namespace inferq::util
