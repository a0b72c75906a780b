#include "protocol/messages.hpp"

#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace inferq::protocol {
namespace {

constexpr std::size_t kLengthBytes = 4;
constexpr std::size_t kHeaderBytes = 2;  // version, type
// The smallest encoding of one list element (every string empty). A count is
// checked against these before anything is reserved for it.
constexpr std::size_t kMinJobInputBytes = 8 + 4 + 4;
constexpr std::size_t kMinJobOutputBytes = 8 + 1 + 4 + 4;
constexpr std::size_t kTimingBytes = std::size_t{4} * 8;  // UnitTiming, after the jobs

template <typename T>
T to_le(T v) noexcept {
  static_assert(std::is_unsigned_v<T>);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  if constexpr (sizeof(T) == 8) {
    v = __builtin_bswap64(v);
  } else if constexpr (sizeof(T) == 4) {
    v = __builtin_bswap32(v);
  }
#endif
  return v;
}

template <typename T>
void put(std::string& out, T v) {
  const auto le = to_le(v);
  out.append(reinterpret_cast<const char*>(&le), sizeof le);
}

void put_u8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }

void put_str(std::string& out, const std::string& s) {
  put(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

template <typename T>
T load(const char* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return to_le(v);
}

// Bytes a string field takes; throws if its u32 prefix cannot hold its size.
std::size_t str_bytes(const std::string& s) {
  if (s.size() > std::numeric_limits<std::uint32_t>::max()) {
    throw std::length_error("inferq protocol: string of " + std::to_string(s.size()) +
                            " bytes does not fit a frame");
  }
  return 4 + s.size();
}

std::size_t body_bytes(const Ready& m) { return 4 + str_bytes(m.handler); }
std::size_t body_bytes(const Fatal& m) { return str_bytes(m.message); }
std::size_t body_bytes(const RunUnit& m) {
  std::size_t n = 8 + 4;
  for (const JobInput& j : m.jobs) n += 8 + str_bytes(j.payload) + str_bytes(j.payload_binary);
  return n;
}
std::size_t body_bytes(const UnitResult& m) {
  std::size_t n = 8 + 4;
  for (const JobOutput& j : m.jobs) n += 8 + 1 + str_bytes(j.body) + str_bytes(j.body_binary);
  return n + kTimingBytes;
}

void put_body(std::string& out, const Ready& m) {
  put(out, m.pid);
  put_str(out, m.handler);
}
void put_body(std::string& out, const Fatal& m) { put_str(out, m.message); }
void put_body(std::string& out, const RunUnit& m) {
  put(out, m.unit_id);
  put(out, static_cast<std::uint32_t>(m.jobs.size()));
  for (const JobInput& j : m.jobs) {
    put(out, static_cast<std::uint64_t>(j.job_id));
    put_str(out, j.payload);
    put_str(out, j.payload_binary);
  }
}
void put_body(std::string& out, const UnitResult& m) {
  put(out, m.unit_id);
  put(out, static_cast<std::uint32_t>(m.jobs.size()));
  for (const JobOutput& j : m.jobs) {
    put(out, static_cast<std::uint64_t>(j.job_id));
    put_u8(out, static_cast<std::uint8_t>(j.outcome));
    put_str(out, j.body);
    put_str(out, j.body_binary);
  }
  put(out, m.timing.decode_ns);
  put(out, m.timing.forward_ns);
  put(out, m.timing.encode_ns);
  put(out, m.timing.sent_ns);
}

// Each message's wire type, by its C++ type: the variant's order does not matter.
constexpr MessageType type_of_message(const Ready&) noexcept { return MessageType::kReady; }
constexpr MessageType type_of_message(const RunUnit&) noexcept { return MessageType::kRunUnit; }
constexpr MessageType type_of_message(const UnitResult&) noexcept { return MessageType::kUnitResult; }
constexpr MessageType type_of_message(const Fatal&) noexcept { return MessageType::kFatal; }

// std::visit throws only for a valueless Message (an assignment that threw
// part-way), which nothing sends; terminating then is what noexcept means.
// NOLINTNEXTLINE(bugprone-exception-escape)
MessageType type_of(const Message& m) noexcept {
  return std::visit([](const auto& v) { return type_of_message(v); }, m);
}

const char* type_name(std::uint8_t type) noexcept {
  switch (static_cast<MessageType>(type)) {
    case MessageType::kReady:
      return "Ready";
    case MessageType::kRunUnit:
      return "RunUnit";
    case MessageType::kUnitResult:
      return "UnitResult";
    case MessageType::kFatal:
      return "Fatal";
  }
  return nullptr;
}

// Bounds-checked cursor over one frame's body. Every getter returns false,
// consuming nothing, when the body is too short.
class Reader {
 public:
  Reader(const char* p, std::size_t n) : p_(p), end_(p + n) {}

  std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }

  template <typename T>
  bool get(T& v) {
    if (remaining() < sizeof(T)) return false;
    v = load<T>(p_);
    p_ += sizeof(T);
    return true;
  }
  bool get_i64(std::int64_t& v) {
    std::uint64_t u = 0;
    if (!get(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  bool get_u8(std::uint8_t& v) {
    if (remaining() < 1) return false;
    v = static_cast<std::uint8_t>(*p_++);
    return true;
  }
  bool get_str(std::string& s) {
    std::uint32_t n = 0;
    if (remaining() < 4) return false;
    n = load<std::uint32_t>(p_);
    if (remaining() - 4 < n) return false;  // checked before allocating
    s.assign(p_ + 4, n);
    p_ += 4 + n;
    return true;
  }

 private:
  const char* p_;
  const char* end_;
};

std::string short_body(const char* type, const std::string& field) {
  return std::string(type) + ": body too short for " + field;
}

std::string indexed(const char* list, std::size_t i, const char* field) {
  return std::string(list) + "[" + std::to_string(i) + "]." + field;
}

std::string count_error(const char* type, std::uint32_t count, std::size_t remaining) {
  return std::string(type) + ": job count " + std::to_string(count) + " exceeds what the remaining " +
         std::to_string(remaining) + " body bytes can hold";
}

// Each decode_* fills `m` and returns "" or why the body is malformed.
std::string decode_body(Reader& r, Ready& m) {
  if (!r.get(m.pid)) return short_body("Ready", "pid");
  if (!r.get_str(m.handler)) return short_body("Ready", "handler");
  return {};
}

std::string decode_body(Reader& r, Fatal& m) {
  if (!r.get_str(m.message)) return short_body("Fatal", "message");
  return {};
}

std::string decode_body(Reader& r, RunUnit& m) {
  std::uint32_t count = 0;
  if (!r.get(m.unit_id)) return short_body("RunUnit", "unit_id");
  if (!r.get(count)) return short_body("RunUnit", "job count");
  if (count > r.remaining() / kMinJobInputBytes) return count_error("RunUnit", count, r.remaining());
  m.jobs.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    JobInput& j = m.jobs[i];
    if (!r.get_i64(j.job_id)) return short_body("RunUnit", indexed("jobs", i, "job_id"));
    if (!r.get_str(j.payload)) return short_body("RunUnit", indexed("jobs", i, "payload"));
    if (!r.get_str(j.payload_binary)) return short_body("RunUnit", indexed("jobs", i, "payload_binary"));
  }
  return {};
}

std::string decode_body(Reader& r, UnitResult& m) {
  std::uint32_t count = 0;
  if (!r.get(m.unit_id)) return short_body("UnitResult", "unit_id");
  if (!r.get(count)) return short_body("UnitResult", "job count");
  if (count > r.remaining() / kMinJobOutputBytes) return count_error("UnitResult", count, r.remaining());
  m.jobs.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    JobOutput& j = m.jobs[i];
    std::uint8_t outcome = 0;
    if (!r.get_i64(j.job_id)) return short_body("UnitResult", indexed("jobs", i, "job_id"));
    if (!r.get_u8(outcome)) return short_body("UnitResult", indexed("jobs", i, "outcome"));
    if (outcome > static_cast<std::uint8_t>(Outcome::kTransient)) {
      return "UnitResult: " + indexed("jobs", i, "outcome") + " has invalid value " + std::to_string(outcome);
    }
    j.outcome = static_cast<Outcome>(outcome);
    if (!r.get_str(j.body)) return short_body("UnitResult", indexed("jobs", i, "body"));
    if (!r.get_str(j.body_binary)) return short_body("UnitResult", indexed("jobs", i, "body_binary"));
  }
  if (!r.get(m.timing.decode_ns) || !r.get(m.timing.forward_ns) || !r.get(m.timing.encode_ns) ||
      !r.get(m.timing.sent_ns))
    return short_body("UnitResult", "timing");
  return {};
}

template <typename T>
std::string decode_as(Reader& r, std::optional<Message>& out) {
  T& m = std::get<T>(out.emplace(std::in_place_type<T>));
  return decode_body(r, m);
}

DecodeResult malformed(std::string why) {
  DecodeResult d;
  d.status = DecodeResult::Status::kMalformed;
  d.error = std::move(why);
  return d;
}

}  // namespace

const char* message_name(const Message& m) noexcept {
  return type_name(static_cast<std::uint8_t>(type_of(m)));
}

void encode(const Message& m, std::string& out) {
  const std::size_t body = std::visit([](const auto& v) { return body_bytes(v); }, m);
  const std::size_t frame = kHeaderBytes + body;
  if (frame > kMaxFrameBytes) {
    throw std::length_error(std::string("inferq protocol: ") + message_name(m) + " frame of " +
                            std::to_string(frame) + " bytes exceeds the limit of " +
                            std::to_string(kMaxFrameBytes));
  }
  // One reservation, then appends that never reallocate.
  out.reserve(out.size() + kLengthBytes + frame);
  put(out, static_cast<std::uint32_t>(frame));
  put_u8(out, kProtocolVersion);
  put_u8(out, static_cast<std::uint8_t>(type_of(m)));
  std::visit([&out](const auto& v) { put_body(out, v); }, m);
}

DecodeResult decode(const char* data, std::size_t size) noexcept {
  if (size < kLengthBytes) return {};
  const std::uint32_t length = load<std::uint32_t>(data);
  if (length < kHeaderBytes) {
    return malformed("frame length " + std::to_string(length) + " is below the minimum of 2");
  }
  if (length > kMaxFrameBytes) {
    return malformed("frame length " + std::to_string(length) + " exceeds the limit of " +
                     std::to_string(kMaxFrameBytes));
  }
  if (size > kLengthBytes) {
    const auto version = static_cast<std::uint8_t>(data[kLengthBytes]);
    if (version != kProtocolVersion) {
      return malformed("protocol version " + std::to_string(version) + ", expected " +
                       std::to_string(kProtocolVersion));
    }
  }
  const char* name = nullptr;
  if (size > kLengthBytes + 1) {
    const auto type = static_cast<std::uint8_t>(data[kLengthBytes + 1]);
    name = type_name(type);
    if (name == nullptr) return malformed("unknown message type " + std::to_string(type));
  }
  if (size - kLengthBytes < length) return {};

  DecodeResult d;
  try {
    Reader r(data + kLengthBytes + kHeaderBytes, length - kHeaderBytes);
    std::string error;
    switch (static_cast<MessageType>(data[kLengthBytes + 1])) {
      case MessageType::kReady:
        error = decode_as<Ready>(r, d.message);
        break;
      case MessageType::kRunUnit:
        error = decode_as<RunUnit>(r, d.message);
        break;
      case MessageType::kUnitResult:
        error = decode_as<UnitResult>(r, d.message);
        break;
      case MessageType::kFatal:
        error = decode_as<Fatal>(r, d.message);
        break;
    }
    if (error.empty() && r.remaining() != 0) {
      error = std::string(name) + ": " + std::to_string(r.remaining()) + " trailing bytes after the body";
    }
    if (!error.empty()) return malformed(std::move(error));
  } catch (const std::bad_alloc&) {
    return malformed("out of memory decoding a frame of " + std::to_string(length) + " bytes");
  }
  d.status = DecodeResult::Status::kOk;
  d.consumed = kLengthBytes + length;
  return d;
}

}  // namespace inferq::protocol
