#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

namespace inferq::util {

// The source of time for deadlines, backoff and timestamps. Code takes a
// `const Clock&` instead of calling std::chrono directly, so tests can move
// time by hand instead of sleeping. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;

  // Monotonic time: for deadlines, intervals and timeouts.
  virtual std::chrono::steady_clock::time_point now() const = 0;

  // Calendar time: for timestamps shown to people or written to the database.
  virtual std::chrono::system_clock::time_point wall_now() const = 0;
};

// `t` in nanoseconds since the steady clock's epoch. The steady clock is
// CLOCK_MONOTONIC, one clock for every process of a host, so the number can
// go from one process to another (an executor's send time of a result).
inline std::int64_t steady_ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// The real clocks.
class SystemClock final : public Clock {
 public:
  // The process-wide instance; lives until exit.
  static const Clock& instance();

  std::chrono::steady_clock::time_point now() const override;
  std::chrono::system_clock::time_point wall_now() const override;
};

// A clock that moves only when told to; for tests. Both clocks start at a
// fixed point (wall: 2024-01-01T00:00:00Z) and advance together.
class ManualClock final : public Clock {
 public:
  ManualClock();
  ManualClock(std::chrono::steady_clock::time_point now, std::chrono::system_clock::time_point wall_now);

  ManualClock(const ManualClock&) = delete;
  ManualClock& operator=(const ManualClock&) = delete;

  std::chrono::steady_clock::time_point now() const override;
  std::chrono::system_clock::time_point wall_now() const override;

  // Moves both clocks forward by `d`; throws std::invalid_argument when `d`
  // is negative (a steady clock never goes back).
  void advance(std::chrono::steady_clock::duration d);

  // Sets the monotonic clock and moves the wall clock by the same amount;
  // throws std::invalid_argument when `now` is earlier than now().
  void set(std::chrono::steady_clock::time_point now);

  // Sets the wall clock alone; it may jump either way, like a real one.
  void set_wall(std::chrono::system_clock::time_point wall_now);

 private:
  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point now_;       // guarded by mu_
  std::chrono::system_clock::time_point wall_now_;  // guarded by mu_
};

}  // namespace inferq::util
