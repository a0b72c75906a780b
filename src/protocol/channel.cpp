#include "protocol/channel.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace inferq::protocol {
namespace {

constexpr std::size_t kLengthBytes = 4;
constexpr std::size_t kInitialCapacity = std::size_t{64} * 1024;
// Below this much free room, make room before reading.
constexpr std::size_t kMinReadRoom = std::size_t{16} * 1024;
// Room reserved ahead for a frame whose length is known; larger frames grow
// geometrically as their bytes arrive, so a lying length costs nothing.
constexpr std::size_t kMaxReadAhead = std::size_t{4} * 1024 * 1024;
// One fill_from reads at most this much; poll wakes us again for the rest.
constexpr std::size_t kMaxReadPerFill = std::size_t{4} * 1024 * 1024;
// A buffer that grew past this for a big frame is released once drained.
constexpr std::size_t kKeepCapacity = std::size_t{8} * 1024 * 1024;

std::uint32_t load_length(const char* p) {
  unsigned char b[4];
  std::memcpy(b, p, 4);
  return static_cast<std::uint32_t>(b[0]) | static_cast<std::uint32_t>(b[1]) << 8 |
         static_cast<std::uint32_t>(b[2]) << 16 | static_cast<std::uint32_t>(b[3]) << 24;
}

// send() so a vanished peer is EPIPE and not SIGPIPE; write() for non-sockets.
ssize_t send_some(int fd, const char* p, std::size_t n, int extra_flags) {
  ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL | extra_flags);
  if (r < 0 && errno == ENOTSOCK) r = ::write(fd, p, n);
  return r;
}

void wait_ready(int fd, short events) {
  pollfd p{fd, events, 0};
  while (::poll(&p, 1, -1) < 0) {
    if (errno != EINTR)
      throw ProtocolError(ProtocolError::Kind::kIo, std::string("poll: ") + std::strerror(errno));
  }
}

// Reads up to n bytes, blocking until at least one arrives. 0 means EOF.
std::size_t read_some_blocking(int fd, char* p, std::size_t n) {
  for (;;) {
    const ssize_t r = ::read(fd, p, n);
    if (r >= 0) return static_cast<std::size_t>(r);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait_ready(fd, POLLIN);
      continue;
    }
    throw ProtocolError(ProtocolError::Kind::kIo, std::string("read: ") + std::strerror(errno));
  }
}

// Releases a thread's scratch buffer after a big frame, on every exit path.
struct ScratchTrim {
  std::string& buf;
  ~ScratchTrim() {
    if (buf.capacity() > kKeepCapacity) std::string().swap(buf);
  }
};

}  // namespace

// ---- FrameReader ----------------------------------------------------------

void FrameReader::make_room() {
  std::size_t need = kMinReadRoom;
  std::size_t frame_end = 0;  // where the first buffered frame ends, if known and incomplete
  if (end_ - start_ >= kLengthBytes) {
    const std::uint32_t length = load_length(buf_.data() + start_);
    const std::size_t end = start_ + kLengthBytes + length;
    if (length <= kMaxFrameBytes && end > end_) {
      frame_end = end;
      need = std::clamp(end - end_, kMinReadRoom, kMaxReadAhead);
    }
  }
  if (buf_.size() - end_ >= need) return;
  if (start_ > 0) {
    // Only the unread tail moves, and it is usually a partial frame.
    std::memmove(buf_.data(), buf_.data() + start_, end_ - start_);
    end_ -= start_;
    if (frame_end != 0) frame_end -= start_;
    start_ = 0;
    if (buf_.size() - end_ >= need) return;
  }
  std::size_t target = std::max({end_ + need, buf_.size() * 2, kInitialCapacity});
  if (frame_end != 0) target = std::min(target, std::max(end_ + need, frame_end));
  buf_.resize(target);
}

bool FrameReader::fill_from(int fd) {
  std::size_t total = 0;
  for (;;) {
    make_room();
    const std::size_t room = buf_.size() - end_;
    const ssize_t n = ::read(fd, buf_.data() + end_, room);
    if (n > 0) {
      end_ += static_cast<std::size_t>(n);
      total += static_cast<std::size_t>(n);
      // A short read means the socket is drained for now; skip the EAGAIN
      // round trip (poll is level-triggered and will report more).
      if (static_cast<std::size_t>(n) < room || total >= kMaxReadPerFill) return true;
      continue;
    }
    if (n == 0) {
      errno = 0;
      return false;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
}

DecodeResult FrameReader::next() {
  // A malformed frame stays at start_, so later calls report it again.
  DecodeResult d = decode(buf_.data() + start_, end_ - start_);
  if (d.status == DecodeResult::Status::kOk) {
    start_ += d.consumed;
    if (start_ == end_) {
      start_ = end_ = 0;
      if (buf_.size() > kKeepCapacity) std::string().swap(buf_);
    }
  }
  return d;
}

// ---- FrameWriter ----------------------------------------------------------

bool FrameWriter::flush_to(int fd) {
  bool ok = true;
  while (start_ < buf_.size()) {
    const ssize_t n = send_some(fd, buf_.data() + start_, buf_.size() - start_, MSG_DONTWAIT);
    if (n >= 0) {
      start_ += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    ok = errno == EAGAIN || errno == EWOULDBLOCK;
    break;
  }
  if (start_ == buf_.size()) {
    buf_.clear();
    start_ = 0;
    if (buf_.capacity() > kKeepCapacity) std::string().swap(buf_);
  } else if (start_ >= kInitialCapacity && start_ >= buf_.size() / 2) {
    // Sent bytes are dropped once they are the larger half, so the buffer
    // stays bounded by what is pending and appends stay amortised O(1).
    buf_.erase(0, start_);
    start_ = 0;
  }
  return ok;
}

// ---- blocking helpers -----------------------------------------------------

std::optional<Message> read_message(int fd) {
  // Reused across calls: no allocation per message in the steady state.
  thread_local std::string buf;
  ScratchTrim trim{buf};
  if (buf.size() < kInitialCapacity) buf.resize(kInitialCapacity);

  std::size_t have = 0;
  while (have < kLengthBytes) {
    const std::size_t n = read_some_blocking(fd, buf.data() + have, kLengthBytes - have);
    if (n == 0) {
      if (have == 0) return std::nullopt;
      throw ProtocolError(ProtocolError::Kind::kTruncated,
                          "truncated frame: EOF after " + std::to_string(have) + " of 4 length bytes");
    }
    have += n;
  }
  DecodeResult d = decode(buf.data(), have);
  if (d.status == DecodeResult::Status::kMalformed)
    throw ProtocolError(ProtocolError::Kind::kMalformed, d.error);

  // Never read past this frame: the next one belongs to the next call.
  const std::size_t total = kLengthBytes + load_length(buf.data());
  bool header_checked = false;
  while (have < total) {
    // Grow with what has arrived, not with what the length claims.
    const std::size_t limit = std::min(total, std::max(have * 2, kInitialCapacity));
    if (buf.size() < limit) buf.resize(std::max(limit, std::min(total, buf.size() * 2)));
    const std::size_t n = read_some_blocking(fd, buf.data() + have, limit - have);
    if (n == 0) {
      throw ProtocolError(
          ProtocolError::Kind::kTruncated,
          "truncated frame: EOF after " + std::to_string(have) + " of " + std::to_string(total) + " bytes");
    }
    have += n;
    if (!header_checked && have < total) {
      // Report a bad version or type now rather than after the whole body.
      header_checked = true;
      d = decode(buf.data(), have);
      if (d.status == DecodeResult::Status::kMalformed) {
        throw ProtocolError(ProtocolError::Kind::kMalformed, d.error);
      }
    }
  }
  d = decode(buf.data(), total);
  if (d.status != DecodeResult::Status::kOk) throw ProtocolError(ProtocolError::Kind::kMalformed, d.error);
  return std::move(d.message);
}

void write_message(int fd, const Message& m) {
  thread_local std::string buf;
  ScratchTrim trim{buf};
  buf.clear();
  encode(m, buf);
  std::size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = send_some(fd, buf.data() + done, buf.size() - done, 0);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait_ready(fd, POLLOUT);
      continue;
    }
    throw ProtocolError(ProtocolError::Kind::kIo, std::string("write: ") + std::strerror(errno));
  }
}

}  // namespace inferq::protocol
