#include "protocol/channel.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include <doctest.h>

using namespace inferq::protocol;
using Status = DecodeResult::Status;

namespace {

// A socketpair closed on scope exit; [0] is "ours", [1] the peer's.
struct Pair {
  int fd[2] = {-1, -1};
  explicit Pair(int extra_flags = 0) {
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | extra_flags, 0, fd) == 0);
  }
  ~Pair() {
    close_end(0);
    close_end(1);
  }
  void close_end(int i) {
    if (fd[i] >= 0) ::close(fd[i]);
    fd[i] = -1;
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
};

void wait_for(int fd, short events) {
  pollfd p{fd, events, 0};
  REQUIRE(::poll(&p, 1, 10'000) == 1);
}

std::string encoded(const Message& m) {
  std::string s;
  encode(m, s);
  return s;
}

void write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    REQUIRE(n > 0);
    done += static_cast<std::size_t>(n);
  }
}

RunUnit big_unit(std::size_t jobs, std::size_t payload_bytes) {
  RunUnit u{42, {}};
  for (std::size_t i = 0; i < jobs; ++i) {
    u.jobs.push_back(
        {static_cast<std::int64_t>(i), std::string(payload_bytes, static_cast<char>('a' + i % 26))});
  }
  return u;
}

}  // namespace

TEST_CASE("FrameWriter and FrameReader move many frames and one bigger than the socket buffer") {
  Pair p(SOCK_NONBLOCK);
  FrameWriter writer;
  FrameReader reader;
  const RunUnit big = big_unit(3, 3 * 1024 * 1024);
  for (int i = 0; i < 1000; ++i) writer.push(Fatal{std::to_string(i)});
  writer.push(big);
  writer.push(Ready{1, "last"});

  int small_frames = 0;
  bool got_big = false;
  bool got_last = false;
  while (!got_last) {
    if (writer.pending()) REQUIRE(writer.flush_to(p.fd[1]));
    wait_for(p.fd[0], POLLIN);
    REQUIRE(reader.fill_from(p.fd[0]));
    for (DecodeResult d = reader.next(); d.status != Status::kNeedMore; d = reader.next()) {
      REQUIRE(d.status == Status::kOk);
      if (auto* f = std::get_if<Fatal>(&*d.message)) {
        CHECK(f->message == std::to_string(small_frames));
        ++small_frames;
      } else if (auto* u = std::get_if<RunUnit>(&*d.message)) {
        CHECK(small_frames == 1000);
        REQUIRE(u->jobs.size() == 3);
        for (std::size_t i = 0; i < 3; ++i) CHECK(u->jobs[i].payload == big.jobs[i].payload);
        got_big = true;
      } else {
        CHECK(got_big);
        got_last = true;
      }
    }
  }
  CHECK(!writer.pending());
  CHECK(reader.empty());
}

TEST_CASE("FrameReader: EOF reports false with errno 0, and frames read before it are kept") {
  Pair p(SOCK_NONBLOCK);
  write_all(p.fd[1], encoded(Ready{7, "a"}) + encoded(Fatal{"bye"}));
  p.close_end(1);
  FrameReader reader;
  bool open = true;
  while (open) open = reader.fill_from(p.fd[0]);
  CHECK(errno == 0);
  DecodeResult a = reader.next();
  REQUIRE(a.status == Status::kOk);
  CHECK(std::get<Ready>(*a.message).pid == 7);
  DecodeResult b = reader.next();
  REQUIRE(b.status == Status::kOk);
  CHECK(std::get<Fatal>(*b.message).message == "bye");
  CHECK(reader.next().status == Status::kNeedMore);
  CHECK(reader.empty());
}

TEST_CASE("FrameReader: nothing to read is not an error") {
  Pair p(SOCK_NONBLOCK);
  FrameReader reader;
  CHECK(reader.fill_from(p.fd[0]));
  CHECK(reader.next().status == Status::kNeedMore);
}

TEST_CASE("FrameReader: a malformed frame is final") {
  Pair p(SOCK_NONBLOCK);
  // A good frame, then a frame of an unknown type, then a good one.
  std::string bytes = encoded(Fatal{"ok"});
  bytes += std::string("\x02\x00\x00\x00", 4) + static_cast<char>(kProtocolVersion) + "\x09";
  bytes += encoded(Fatal{"never"});
  write_all(p.fd[1], bytes);
  FrameReader reader;
  REQUIRE(reader.fill_from(p.fd[0]));
  CHECK(reader.next().status == Status::kOk);
  const DecodeResult bad = reader.next();
  CHECK(bad.status == Status::kMalformed);
  CHECK(bad.error.find("unknown message type 9") != std::string::npos);
  const DecodeResult again = reader.next();
  CHECK(again.status == Status::kMalformed);
  CHECK(again.error == bad.error);
}

TEST_CASE("FrameReader: a frame that claims a huge length is refused at once") {
  Pair p(SOCK_NONBLOCK);
  write_all(p.fd[1], std::string("\xff\xff\xff\x7f", 4));
  FrameReader reader;
  REQUIRE(reader.fill_from(p.fd[0]));
  const DecodeResult d = reader.next();
  CHECK(d.status == Status::kMalformed);
  CHECK(d.error.find("exceeds the limit") != std::string::npos);
}

TEST_CASE("FrameWriter: a vanished peer is a write error, not SIGPIPE") {
  Pair p(SOCK_NONBLOCK);
  p.close_end(1);
  FrameWriter writer;
  writer.push(Fatal{"nobody listens"});
  CHECK(!writer.flush_to(p.fd[0]));
  CHECK(errno == EPIPE);
  CHECK(writer.pending());
}

TEST_CASE("read_message and write_message: a big message between two threads") {
  for (int flags : {0, static_cast<int>(SOCK_NONBLOCK)}) {
    CAPTURE(flags);
    Pair p(flags);
    const RunUnit big = big_unit(4, 2 * 1024 * 1024 + 3);
    std::thread writer([&] {
      write_message(p.fd[1], big);
      write_message(p.fd[1], Fatal{"after"});
    });
    std::optional<Message> m = read_message(p.fd[0]);
    std::optional<Message> after = read_message(p.fd[0]);
    writer.join();
    REQUIRE(m.has_value());
    const auto& u = std::get<RunUnit>(*m);
    CHECK(u.unit_id == 42);
    REQUIRE(u.jobs.size() == 4);
    for (std::size_t i = 0; i < 4; ++i) CHECK(u.jobs[i].payload == big.jobs[i].payload);
    REQUIRE(after.has_value());
    CHECK(std::get<Fatal>(*after).message == "after");
  }
}

TEST_CASE("read_message reads no byte past its frame") {
  Pair p;
  write_all(p.fd[1], encoded(Ready{1, "x"}) + encoded(Ready{2, "y"}) + encoded(Fatal{"z"}));
  p.close_end(1);
  CHECK(std::get<Ready>(*read_message(p.fd[0])).pid == 1);
  CHECK(std::get<Ready>(*read_message(p.fd[0])).pid == 2);
  CHECK(std::get<Fatal>(*read_message(p.fd[0])).message == "z");
  CHECK(!read_message(p.fd[0]).has_value());
}

TEST_CASE("read_message: clean EOF is nullopt, a cut frame is kTruncated") {
  SUBCASE("clean EOF") {
    Pair p;
    p.close_end(1);
    CHECK(!read_message(p.fd[0]).has_value());
  }
  SUBCASE("EOF inside the length") {
    Pair p;
    write_all(p.fd[1], std::string("\x10\x00", 2));
    p.close_end(1);
    try {
      read_message(p.fd[0]);
      FAIL("no exception");
    } catch (const ProtocolError& e) {
      CHECK(e.kind() == ProtocolError::Kind::kTruncated);
    }
  }
  SUBCASE("EOF inside the body") {
    Pair p;
    const std::string f = encoded(Fatal{"truncated"});
    write_all(p.fd[1], f.substr(0, f.size() - 1));
    p.close_end(1);
    try {
      read_message(p.fd[0]);
      FAIL("no exception");
    } catch (const ProtocolError& e) {
      CHECK(e.kind() == ProtocolError::Kind::kTruncated);
    }
  }
}

TEST_CASE("read_message: a bad header is reported without waiting for the body") {
  Pair p;
  // Claims 1000 bytes, version 9; the rest never comes and the peer stays open.
  write_all(p.fd[1], std::string("\xe8\x03\x00\x00\x09\x01", 6));
  try {
    read_message(p.fd[0]);
    FAIL("no exception");
  } catch (const ProtocolError& e) {
    CHECK(e.kind() == ProtocolError::Kind::kMalformed);
    CHECK(std::string(e.what()).find("protocol version 9") != std::string::npos);
  }
}

TEST_CASE("read_message: a malformed body is kMalformed") {
  Pair p;
  write_all(p.fd[1], std::string("\x03\x00\x00\x00", 4) + static_cast<char>(kProtocolVersion) +
                         std::string("\x04\x00", 2));
  try {
    read_message(p.fd[0]);
    FAIL("no exception");
  } catch (const ProtocolError& e) {
    CHECK(e.kind() == ProtocolError::Kind::kMalformed);
    CHECK(std::string(e.what()).find("Fatal: body too short") != std::string::npos);
  }
}

TEST_CASE("write_message to a vanished peer throws kIo, not SIGPIPE") {
  Pair p;
  p.close_end(1);
  try {
    write_message(p.fd[0], Fatal{"x"});
    FAIL("no exception");
  } catch (const ProtocolError& e) {
    CHECK(e.kind() == ProtocolError::Kind::kIo);
  }
}

TEST_CASE("ProtocolError built from a message alone is kMalformed") {
  CHECK(ProtocolError("x").kind() == ProtocolError::Kind::kMalformed);
  CHECK(ProtocolError(ProtocolError::Kind::kIo, "y").kind() == ProtocolError::Kind::kIo);
}
