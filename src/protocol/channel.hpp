#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>

#include "protocol/messages.hpp"

namespace inferq::protocol {

// Byte buffering for one end of a socketpair, for non-blocking use from a
// poll loop (the supervisor side). Owns no fd; the caller does.
class FrameReader {
 public:
  // Reads what is available from `fd` (which must be non-blocking) into the
  // buffer, at most a few MiB per call so one busy peer cannot starve the
  // others of a level-triggered poll loop. Returns false on EOF (errno set to
  // 0) or a read error (errno kept), true otherwise. Frames read before the
  // EOF are still buffered: drain them with next().
  bool fill_from(int fd);
  // Takes the next complete frame, if any. kMalformed is final: the same
  // error is returned again on every later call. Call until kNeedMore after
  // each fill_from, or the buffer grows without bound.
  DecodeResult next();
  bool empty() const { return end_ == start_; }

 private:
  // Makes room at the end of buf_ for the next read.
  void make_room();

  std::string buf_;  // [start_, end_) holds unread bytes; the rest is room
  std::size_t start_ = 0;
  std::size_t end_ = 0;
};

class FrameWriter {
 public:
  // Queues `m`. Throws std::length_error like encode().
  void push(const Message& m) { encode(m, buf_); }
  // Writes what the socket takes now without blocking (EAGAIN is fine: call
  // again when poll says POLLOUT). Returns false on a write error (errno
  // kept), e.g. EPIPE once the peer is gone; never raises SIGPIPE on a socket.
  bool flush_to(int fd);
  bool pending() const { return buf_.size() > start_; }

 private:
  std::string buf_;
  std::size_t start_ = 0;
};

// Thrown by the blocking helpers below. kind() tells a peer that broke the
// protocol (kMalformed, kTruncated) from a failing socket (kIo).
class ProtocolError : public std::runtime_error {
 public:
  enum class Kind { kMalformed, kTruncated, kIo };

  using std::runtime_error::runtime_error;  // kind() is kMalformed
  ProtocolError(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}

  Kind kind() const noexcept { return kind_; }

 private:
  Kind kind_ = Kind::kMalformed;
};

// Blocking helpers for the executor side (they also work on a non-blocking
// fd, by waiting in poll()). read_message blocks until one whole frame has
// arrived and reads no byte past it; returns nullopt on a clean EOF before
// any byte of a frame; throws ProtocolError on a malformed frame, a truncated
// frame or an I/O error. A hostile length never allocates more than the bytes
// that actually arrived (times two).
std::optional<Message> read_message(int fd);
// Blocks until the whole frame is written. Throws ProtocolError (kIo) on a
// write error (EPIPE included; never raises SIGPIPE on a socket) and
// std::length_error like encode(), before writing anything.
void write_message(int fd, const Message& m);

}  // namespace inferq::protocol
