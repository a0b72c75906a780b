#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace inferq::util {

// The delay before retry number `attempt` (1 = the first retry):
// min(max, base * 2^(attempt-1)), scaled by a jitter factor of
// 0.5 + 0.5 * jitter_unit, i.e. into [capped/2, capped]. `jitter_unit` is a
// uniform random number in [0, 1) chosen by the caller, which keeps this
// function pure. Attempts below 1 count as 1; out-of-range jitter_unit is
// clamped; a huge attempt number yields `max`, never an overflow. A
// non-positive base gives zero; a max below base caps at max.
std::chrono::milliseconds retry_delay(int attempt, std::chrono::milliseconds base,
                                      std::chrono::milliseconds max, double jitter_unit);

// Exponential backoff with jitter for reconnect and restart loops: next()
// returns retry_delay(1, ...), retry_delay(2, ...), ... with the jitter drawn
// from a generator seeded at construction (fixed seed = repeatable delays).
// Not thread-safe: one loop owns one Backoff.
class Backoff {
 public:
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds max,
          std::uint32_t seed = std::random_device{}());

  // The delay to wait before the next try; each call doubles it up to max.
  std::chrono::milliseconds next();

  // Starts over from `base`: call after a try succeeded.
  void reset() noexcept;

  // Delays handed out by next() since construction or the last reset().
  int attempts() const noexcept { return attempt_; }

 private:
  std::chrono::milliseconds base_;
  std::chrono::milliseconds max_;
  std::mt19937 rng_;
  int attempt_ = 0;
};

}  // namespace inferq::util
