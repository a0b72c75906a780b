#include "util/clock.hpp"

#include <doctest.h>

#include <stdexcept>
#include <thread>
#include <vector>

using inferq::util::Clock;
using inferq::util::ManualClock;
using inferq::util::SystemClock;
using namespace std::chrono_literals;

TEST_CASE("SystemClock is one instance that follows the real clocks") {
  const Clock& clock = SystemClock::instance();
  CHECK(&clock == &SystemClock::instance());
  const auto steady_before = std::chrono::steady_clock::now();
  const auto wall_before = std::chrono::system_clock::now();
  const auto steady = clock.now();
  const auto wall = clock.wall_now();
  CHECK(steady >= steady_before);
  CHECK(steady <= std::chrono::steady_clock::now());
  CHECK(wall >= wall_before - 1s);  // the wall clock may be stepped, but not by much here
  CHECK(wall <= std::chrono::system_clock::now() + 1s);
}

TEST_CASE("ManualClock stands still until moved") {
  ManualClock clock;
  const auto start = clock.now();
  const auto wall_start = clock.wall_now();
  CHECK(start.time_since_epoch() > 0s);
  CHECK(wall_start == std::chrono::system_clock::time_point(1'704'067'200s));
  CHECK(clock.now() == start);

  clock.advance(1500ms);
  CHECK(clock.now() - start == 1500ms);
  CHECK(clock.wall_now() - wall_start == 1500ms);

  clock.advance(0s);
  CHECK(clock.now() - start == 1500ms);
}

TEST_CASE("ManualClock set moves both clocks; set_wall moves only the wall clock") {
  ManualClock clock;
  const auto start = clock.now();
  const auto wall_start = clock.wall_now();
  clock.set(start + 10s);
  CHECK(clock.now() == start + 10s);
  CHECK(clock.wall_now() == wall_start + 10s);

  clock.set_wall(wall_start - 1h);  // a wall clock may step backwards
  CHECK(clock.wall_now() == wall_start - 1h);
  CHECK(clock.now() == start + 10s);
}

TEST_CASE("ManualClock refuses to run its steady clock backwards") {
  ManualClock clock;
  const auto start = clock.now();
  CHECK_THROWS_AS(clock.advance(-1ms), std::invalid_argument);
  CHECK_THROWS_AS(clock.set(start - 1ms), std::invalid_argument);
  CHECK(clock.now() == start);
}

TEST_CASE("ManualClock can be used through the Clock interface and from many threads") {
  ManualClock manual(std::chrono::steady_clock::time_point(100s),
                     std::chrono::system_clock::time_point(200s));
  const Clock& clock = manual;
  CHECK(clock.now() == std::chrono::steady_clock::time_point(100s));
  CHECK(clock.wall_now() == std::chrono::system_clock::time_point(200s));

  constexpr int kThreads = 4;
  constexpr int kSteps = 1000;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int step = 0; step < kSteps; ++step) {
        manual.advance(1ms);
        (void)clock.now();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(clock.now() ==
        std::chrono::steady_clock::time_point(100s) + std::chrono::milliseconds(kThreads * kSteps));
}
