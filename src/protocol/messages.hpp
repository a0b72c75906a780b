#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

// Messages between the supervisor and an inferq-executor, and their framing.
//
// Frame: u32 little-endian length of what follows, then u8 protocol version,
// u8 message type, then the body. Integers are little-endian; strings and
// lists are prefixed with their u32 length/count. A frame longer than
// kMaxFrameBytes, a wrong version, an unknown type or a body that does not
// decode exactly is malformed.
namespace inferq::protocol {

// 2: UnitResult carries the executor's stage timing (issue 21).
// 3: jobs and results carry binary tensor data beside their JSON.
inline constexpr std::uint8_t kProtocolVersion = 3;
inline constexpr std::uint32_t kMaxFrameBytes = 1u << 30;  // 1 GiB

enum class MessageType : std::uint8_t {
  kReady = 1,       // executor -> supervisor, once, after start-up
  kRunUnit = 2,     // supervisor -> executor
  kUnitResult = 3,  // executor -> supervisor, one per RunUnit
  kFatal = 4,       // executor -> supervisor, just before it exits on purpose
};

// Sent once the executor is ready to run units (model loaded, warmed up).
struct Ready {
  std::uint32_t pid = 0;
  std::string handler;  // what it runs, e.g. "builtin:echo"
};

struct JobInput {
  std::int64_t job_id = 0;
  std::string payload;         // JSON text of inferq.jobs.payload
  std::string payload_binary;  // inferq.jobs.payload_binary (empty when NULL)
};

struct RunUnit {
  std::uint64_t unit_id = 0;  // the lease id that claimed these jobs
  std::vector<JobInput> jobs;
};

enum class Outcome : std::uint8_t {
  kSucceeded = 0,  // body: result JSON text
  kPermanent = 1,  // body: error message; not retried
  kTransient = 2,  // body: error message; retried with backoff
};

struct JobOutput {
  std::int64_t job_id = 0;
  Outcome outcome = Outcome::kSucceeded;
  std::string body;
  // When succeeded: the bytes of the result's binary outputs, in output
  // order (empty when it has none).
  std::string body_binary;
};

// Where a unit's time went in the executor, for inferq_unit_stage_seconds.
// A built-in handler's whole run counts as its forward.
struct UnitTiming {
  std::uint64_t decode_ns = 0;   // payloads to the batch's input tensors
  std::uint64_t forward_ns = 0;  // the forward pass, its outputs on the host
  std::uint64_t encode_ns = 0;   // output tensors to result documents
  // steady_clock (CLOCK_MONOTONIC, shared by the processes of one host) when
  // the executor wrote the result: the supervisor's receipt minus this is the
  // result's trip back.
  std::uint64_t sent_ns = 0;
};

struct UnitResult {
  std::uint64_t unit_id = 0;
  std::vector<JobOutput> jobs;  // one per job of the unit, same order
  UnitTiming timing;
};

// The executor is about to exit because it can no longer run units safely
// (e.g. a sticky CUDA error); the unit in flight is charged an attempt.
struct Fatal {
  std::string message;
};

// inferq-executor exit codes the supervisor acts on (the others it only logs).
// Startup: the executor could not set up its queue (it sent Fatal with why,
// naming the queue and key, before Ready); during the daemon's start-up this
// stops `inferq run`. Idle: it had no unit for the queue's idle_exit_after
// and left on purpose, which is not a crash.
inline constexpr int kExecutorExitStartup = 5;
inline constexpr int kExecutorExitIdle = 6;

using Message = std::variant<Ready, RunUnit, UnitResult, Fatal>;

// The message's name ("Ready", "RunUnit", ...), for logs and errors.
const char* message_name(const Message& m) noexcept;

// Appends one whole frame (length prefix included) holding `m` to `out`.
// Throws std::length_error (and leaves `out` unchanged) if the frame would be
// longer than kMaxFrameBytes, which the peer would reject.
void encode(const Message& m, std::string& out);

// Result of trying to take one frame off the front of a byte buffer.
struct DecodeResult {
  enum class Status { kOk, kNeedMore, kMalformed } status = Status::kNeedMore;
  std::optional<Message> message;  // set when kOk
  std::size_t consumed = 0;        // bytes of the frame, when kOk
  std::string error;               // why, when kMalformed
};

// Decodes the first frame in [data, data+size). Never throws. A bad length,
// version or type is reported as kMalformed as soon as its bytes are present,
// without waiting for the rest of the frame. Allocates at most about the
// frame's size, whatever counts a hostile frame declares.
DecodeResult decode(const char* data, std::size_t size) noexcept;

}  // namespace inferq::protocol
