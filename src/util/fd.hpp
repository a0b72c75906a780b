#pragma once

namespace inferq::util {

// Owns a file descriptor and closes it when destroyed. Move-only; -1 means
// "owns nothing".
class UniqueFd {
 public:
  UniqueFd() noexcept = default;

  // Takes ownership of `fd` (may be -1).
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;

  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  ~UniqueFd() noexcept { reset(); }

  // The descriptor, still owned; -1 when empty.
  int get() const noexcept { return fd_; }

  // True when a descriptor is owned.
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  // Gives up ownership without closing; returns the descriptor (or -1).
  [[nodiscard]] int release() noexcept;

  // Closes the owned descriptor (if any) and takes ownership of `fd`.
  // Resetting to the descriptor already owned is a no-op.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

}  // namespace inferq::util
