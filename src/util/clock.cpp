#include "util/clock.hpp"

#include <stdexcept>

namespace inferq::util {
namespace {

// Far from the epoch, so a default-constructed time_point used as "never"
// in code under test cannot be mistaken for the current time.
constexpr std::chrono::hours kManualSteadyStart{24};
constexpr std::chrono::seconds kManualWallStart{1'704'067'200};  // 2024-01-01T00:00:00Z

}  // namespace

const Clock& SystemClock::instance() {
  static const SystemClock clock;
  return clock;
}

std::chrono::steady_clock::time_point SystemClock::now() const { return std::chrono::steady_clock::now(); }

std::chrono::system_clock::time_point SystemClock::wall_now() const {
  return std::chrono::system_clock::now();
}

ManualClock::ManualClock()
    : ManualClock(std::chrono::steady_clock::time_point(kManualSteadyStart),
                  std::chrono::system_clock::time_point(kManualWallStart)) {}

ManualClock::ManualClock(std::chrono::steady_clock::time_point now,
                         std::chrono::system_clock::time_point wall_now)
    : now_(now), wall_now_(wall_now) {}

std::chrono::steady_clock::time_point ManualClock::now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return now_;
}

std::chrono::system_clock::time_point ManualClock::wall_now() const {
  std::lock_guard<std::mutex> lock(mu_);
  return wall_now_;
}

void ManualClock::advance(std::chrono::steady_clock::duration d) {
  // A steady clock that goes back would break the code under test in ways
  // a real one never does; that is a bug in the test.
  if (d < d.zero()) throw std::invalid_argument("ManualClock::advance: negative duration");
  std::lock_guard<std::mutex> lock(mu_);
  now_ += d;
  wall_now_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
}

void ManualClock::set(std::chrono::steady_clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (now < now_) throw std::invalid_argument("ManualClock::set: steady time may not go backwards");
  wall_now_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(now - now_);
  now_ = now;
}

void ManualClock::set_wall(std::chrono::system_clock::time_point wall_now) {
  std::lock_guard<std::mutex> lock(mu_);
  wall_now_ = wall_now;
}

}  // namespace inferq::util
