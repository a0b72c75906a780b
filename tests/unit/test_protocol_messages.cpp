#include "protocol/messages.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include <doctest.h>

#include "protocol/channel.hpp"

using namespace inferq::protocol;
using Status = DecodeResult::Status;

namespace {

std::string frame_of(const Message& m) {
  std::string out;
  encode(m, out);
  return out;
}

void put_u32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& s, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A hand-built frame: length prefix, version, type, then `body`.
std::string raw_frame(std::uint8_t type, const std::string& body, std::uint8_t version = kProtocolVersion) {
  std::string s;
  put_u32(s, static_cast<std::uint32_t>(2 + body.size()));
  s.push_back(static_cast<char>(version));
  s.push_back(static_cast<char>(type));
  return s + body;
}

Message round_trip(const Message& m) {
  const std::string bytes = frame_of(m);
  DecodeResult d = decode(bytes.data(), bytes.size());
  REQUIRE(d.status == Status::kOk);
  CHECK(d.consumed == bytes.size());
  CHECK(d.error.empty());
  REQUIRE(d.message.has_value());
  return std::move(*d.message);
}

DecodeResult decode_str(const std::string& s) { return decode(s.data(), s.size()); }

void check_malformed(const std::string& bytes, const std::string& needle) {
  const DecodeResult d = decode_str(bytes);
  CHECK(d.status == Status::kMalformed);
  CHECK(!d.message.has_value());
  INFO("error: " << d.error);
  CHECK(d.error.find(needle) != std::string::npos);
}

// Bytes that make up a binary-safe payload: NUL, high bytes, UTF-8.
const std::string kOddBytes = std::string("{\"a\":\"\0\xff\xc3\xa9\"}", 12);

}  // namespace

TEST_CASE("Ready round-trips") {
  const Message m = round_trip(Ready{4242, "builtin:echo"});
  const auto& r = std::get<Ready>(m);
  CHECK(r.pid == 4242);
  CHECK(r.handler == "builtin:echo");
}

TEST_CASE("RunUnit round-trips, empty, one job and many, binary-safe payloads") {
  SUBCASE("no jobs") {
    const auto r = std::get<RunUnit>(round_trip(RunUnit{7, {}}));
    CHECK(r.unit_id == 7);
    CHECK(r.jobs.empty());
  }
  SUBCASE("several jobs keep order, ids (negative too) and bytes") {
    RunUnit u{0xfedcba9876543210ull,
              {{1, "{}"}, {-5, kOddBytes}, {INT64_MAX, ""}, {INT64_MIN, std::string(100000, 'x')}}};
    const auto r = std::get<RunUnit>(round_trip(u));
    CHECK(r.unit_id == u.unit_id);
    REQUIRE(r.jobs.size() == u.jobs.size());
    for (std::size_t i = 0; i < u.jobs.size(); ++i) {
      CHECK(r.jobs[i].job_id == u.jobs[i].job_id);
      CHECK(r.jobs[i].payload == u.jobs[i].payload);
      CHECK(r.jobs[i].payload_binary.empty());
    }
  }
  SUBCASE("binary tensor data travels beside the JSON, byte for byte") {
    RunUnit u{3, {{1, "{}", kOddBytes}, {2, "{}", ""}, {3, "", std::string(70000, '\0')}}};
    const auto r = std::get<RunUnit>(round_trip(u));
    REQUIRE(r.jobs.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
      CHECK(r.jobs[i].payload == u.jobs[i].payload);
      CHECK(r.jobs[i].payload_binary == u.jobs[i].payload_binary);
    }
  }
}

TEST_CASE("UnitResult round-trips every outcome") {
  UnitResult u{99,
               {{1, Outcome::kSucceeded, "{\"y\":1}"},
                {2, Outcome::kPermanent, "bad"},
                {3, Outcome::kTransient, ""},
                {4, Outcome::kSucceeded, kOddBytes},
                {5, Outcome::kSucceeded, "{}", kOddBytes}}};
  const auto r = std::get<UnitResult>(round_trip(u));
  CHECK(r.unit_id == 99);
  REQUIRE(r.jobs.size() == 5);
  for (std::size_t i = 0; i < 5; ++i) {
    CHECK(r.jobs[i].job_id == u.jobs[i].job_id);
    CHECK(r.jobs[i].outcome == u.jobs[i].outcome);
    CHECK(r.jobs[i].body == u.jobs[i].body);
    CHECK(r.jobs[i].body_binary == u.jobs[i].body_binary);
  }
}

TEST_CASE("UnitResult carries the executor's stage timing") {
  UnitResult u{7, {{1, Outcome::kSucceeded, "{}"}}};
  u.timing = {11, 0x0102030405060708ull, 33, 0xfffffffffffffffeull};
  const auto r = std::get<UnitResult>(round_trip(u));
  CHECK(r.timing.decode_ns == 11);
  CHECK(r.timing.forward_ns == 0x0102030405060708ull);
  CHECK(r.timing.encode_ns == 33);
  CHECK(r.timing.sent_ns == 0xfffffffffffffffeull);
  // A body without the timing (version 1's) is too short.
  const std::string body = frame_of(u).substr(6);
  check_malformed(raw_frame(3, body.substr(0, body.size() - 8)), "UnitResult: body too short for timing");
}

TEST_CASE("Fatal round-trips") {
  CHECK(std::get<Fatal>(round_trip(Fatal{"CUDA error: an illegal memory access"})).message ==
        "CUDA error: an illegal memory access");
  CHECK(std::get<Fatal>(round_trip(Fatal{""})).message.empty());
}

TEST_CASE("the wire format is what the header documents") {
  const std::string bytes = frame_of(Ready{0x01020304, "ab"});
  const std::string expected = std::string("\x0c\x00\x00\x00", 4) + "\x03\x01" + "\x04\x03\x02\x01" +
                               std::string("\x02\x00\x00\x00", 4) + "ab";
  CHECK(bytes == expected);
  // A job: id, payload, then its binary data.
  const std::string run = frame_of(RunUnit{9, {{5, "{}", "\x01"}}});
  const std::string run_expected = std::string("\x21\x00\x00\x00", 4) + "\x03\x02" +
                                   std::string("\x09\0\0\0\0\0\0\0", 8) + std::string("\x01\0\0\0", 4) +
                                   std::string("\x05\0\0\0\0\0\0\0", 8) + std::string("\x02\0\0\0", 4) +
                                   "{}" + std::string("\x01\0\0\0", 4) + "\x01";
  CHECK(run == run_expected);
  CHECK(message_name(Message{RunUnit{}}) == std::string("RunUnit"));
  CHECK(message_name(Message{Fatal{}}) == std::string("Fatal"));
}

TEST_CASE("encode appends, and frames decode one after another") {
  std::string buf = "prefix";
  encode(Ready{1, "x"}, buf);
  encode(Fatal{"y"}, buf);
  CHECK(buf.compare(0, 6, "prefix") == 0);
  DecodeResult a = decode(buf.data() + 6, buf.size() - 6);
  REQUIRE(a.status == Status::kOk);
  CHECK(std::holds_alternative<Ready>(*a.message));
  DecodeResult b = decode(buf.data() + 6 + a.consumed, buf.size() - 6 - a.consumed);
  REQUIRE(b.status == Status::kOk);
  CHECK(std::get<Fatal>(*b.message).message == "y");
  CHECK(6 + a.consumed + b.consumed == buf.size());
}

TEST_CASE("every proper prefix of a frame needs more") {
  const std::string bytes =
      frame_of(UnitResult{5, {{1, Outcome::kSucceeded, "{\"a\":1}"}, {2, Outcome::kTransient, "later"}}});
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    const DecodeResult d = decode(bytes.data(), n);
    INFO("prefix of " << n << " bytes");
    CHECK(d.status == Status::kNeedMore);
    CHECK(!d.message.has_value());
  }
  CHECK(decode_str(bytes).status == Status::kOk);
}

TEST_CASE("malformed frames are rejected with a reason") {
  SUBCASE("length below 2") {
    std::string s;
    put_u32(s, 1);
    check_malformed(s, "below the minimum");
    s.clear();
    put_u32(s, 0);
    check_malformed(s, "below the minimum");
  }
  SUBCASE("length above the limit is refused from its 4 bytes alone") {
    std::string s;
    put_u32(s, kMaxFrameBytes + 1);
    check_malformed(s, "exceeds the limit");
    s.clear();
    put_u32(s, 0xffffffffu);
    check_malformed(s, "exceeds the limit");
  }
  SUBCASE("wrong version, before the body has arrived") {
    std::string s = raw_frame(1, std::string(100, '\0'), 1);  // version 1 had no unit timing
    check_malformed(s.substr(0, 5), "protocol version 1");
    check_malformed(s, "protocol version 1");
  }
  SUBCASE("unknown type, before the body has arrived") {
    check_malformed(raw_frame(0, "").substr(0, 6), "unknown message type 0");
    check_malformed(raw_frame(5, "xxxxxx"), "unknown message type 5");
    check_malformed(raw_frame(255, ""), "unknown message type 255");
  }
  SUBCASE("bodies too short for their type") {
    check_malformed(raw_frame(1, ""), "Ready: body too short for pid");
    check_malformed(raw_frame(1, std::string(4, '\0')), "Ready: body too short for handler");
    std::string ready;
    put_u32(ready, 1);
    put_u32(ready, 10);
    check_malformed(raw_frame(1, ready + "abc"), "Ready: body too short for handler");
    check_malformed(raw_frame(2, std::string(7, '\0')), "RunUnit: body too short for unit_id");
    check_malformed(raw_frame(3, std::string(10, '\0')), "UnitResult: body too short for job count");
    check_malformed(raw_frame(4, "\x01"), "Fatal: body too short for message");
  }
  SUBCASE("a job cut short names the job") {
    std::string body;
    put_u64(body, 1);
    put_u32(body, 2);
    put_u64(body, 10);
    put_u32(body, 2);
    body += "{}";
    put_u32(body, 0);  // no binary data
    put_u64(body, 11);
    put_u32(body, 5);
    body += "{}{}";  // one byte short
    // Padding keeps the count plausible so the string check is what fires.
    check_malformed(raw_frame(2, body), "RunUnit: body too short for jobs[1].payload");
  }
  SUBCASE("trailing bytes after a complete body") {
    check_malformed(raw_frame(2, frame_of(RunUnit{1, {{2, "{}"}}}).substr(6) + "z"),
                    "RunUnit: 1 trailing bytes");
    check_malformed(raw_frame(4, frame_of(Fatal{"m"}).substr(6) + "zz"), "Fatal: 2 trailing bytes");
    check_malformed(raw_frame(1, frame_of(Ready{1, "h"}).substr(6) + "zzz"), "Ready: 3 trailing bytes");
    check_malformed(raw_frame(3, frame_of(UnitResult{1, {}}).substr(6) + "z"),
                    "UnitResult: 1 trailing bytes");
  }
  SUBCASE("a hostile count is refused before anything is allocated for it") {
    std::string body;
    put_u64(body, 1);
    put_u32(body, 0xffffffffu);
    check_malformed(raw_frame(2, body), "RunUnit: job count 4294967295 exceeds");
    check_malformed(raw_frame(3, body), "UnitResult: job count 4294967295 exceeds");
    // One element more than the bytes could hold, even with empty strings.
    std::string two;
    put_u64(two, 1);
    put_u32(two, 2);
    two += std::string(16 + 15, '\0');
    check_malformed(raw_frame(2, two), "job count 2 exceeds");
  }
  SUBCASE("a hostile string length is refused") {
    std::string body;
    put_u32(body, 0xffffffffu);
    check_malformed(raw_frame(4, body), "Fatal: body too short for message");
  }
  SUBCASE("invalid outcome values") {
    for (int v : {3, 4, 255}) {
      std::string body;
      put_u64(body, 1);
      put_u32(body, 1);
      put_u64(body, 7);
      body.push_back(static_cast<char>(v));
      put_u32(body, 0);
      put_u32(body, 0);
      check_malformed(raw_frame(3, body), "jobs[0].outcome has invalid value " + std::to_string(v));
    }
  }
}

TEST_CASE("a frame split byte by byte through FrameReader on a socketpair") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
  std::string bytes = frame_of(RunUnit{3, {{1, "{\"a\":[1,2,3]}"}, {2, kOddBytes}}});
  bytes += frame_of(Fatal{"second"});
  FrameReader reader;
  int frames = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    REQUIRE(::write(sv[1], &bytes[i], 1) == 1);
    REQUIRE(reader.fill_from(sv[0]));
    for (DecodeResult d = reader.next(); d.status != Status::kNeedMore; d = reader.next()) {
      REQUIRE(d.status == Status::kOk);
      ++frames;
      if (frames == 1) {
        CHECK(i == bytes.size() - frame_of(Fatal{"second"}).size() - 1);
        const auto& u = std::get<RunUnit>(*d.message);
        CHECK(u.unit_id == 3);
        REQUIRE(u.jobs.size() == 2);
        CHECK(u.jobs[1].payload == kOddBytes);
      } else {
        CHECK(i == bytes.size() - 1);
        CHECK(std::get<Fatal>(*d.message).message == "second");
      }
    }
  }
  CHECK(frames == 2);
  CHECK(reader.empty());
  ::close(sv[0]);
  ::close(sv[1]);
}
