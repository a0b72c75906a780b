#include "util/backoff.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace inferq::util {
namespace {

// 2^62 ms is already far beyond any max; stopping the count here keeps the
// shift below from overflowing.
constexpr int kMaxDoublings = 62;

}  // namespace

std::chrono::milliseconds retry_delay(int attempt, std::chrono::milliseconds base,
                                      std::chrono::milliseconds max, double jitter_unit) {
  using Rep = std::chrono::milliseconds::rep;
  if (base.count() <= 0 || max.count() <= 0) return std::chrono::milliseconds(0);

  const int doublings = std::clamp(attempt, 1, kMaxDoublings + 1) - 1;
  Rep capped = max.count();
  // base << doublings <= max  <=>  base <= max >> doublings, without overflow.
  if (base.count() <= (max.count() >> doublings)) capped = base.count() << doublings;

  if (!(jitter_unit >= 0.0)) jitter_unit = 0.0;  // also catches NaN
  if (jitter_unit >= 1.0) jitter_unit = std::nextafter(1.0, 0.0);
  // capped/2 plus a jittered share of the other half, in integers where it
  // matters, so a delay near the top of the range cannot overflow.
  const Rep half = capped / 2;
  const Rep rest = capped - half;
  const auto jittered = static_cast<Rep>(static_cast<double>(rest) * jitter_unit);
  return std::chrono::milliseconds(std::min(capped, half + jittered));
}

Backoff::Backoff(std::chrono::milliseconds base, std::chrono::milliseconds max, std::uint32_t seed)
    : base_(base), max_(max), rng_(seed) {}

std::chrono::milliseconds Backoff::next() {
  if (attempt_ < std::numeric_limits<int>::max()) ++attempt_;
  // Raw 32-bit draws rather than std::uniform_real_distribution, whose
  // output differs between standard libraries and may even return 1.0.
  const double jitter_unit = static_cast<double>(rng_()) / 4294967296.0;
  return retry_delay(attempt_, base_, max_, jitter_unit);
}

void Backoff::reset() noexcept { attempt_ = 0; }

}  // namespace inferq::util
