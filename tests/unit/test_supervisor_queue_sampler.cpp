#include "supervisor/queue_sampler.hpp"

#include <doctest.h>

using inferq::supervisor::kSampleDutyFactor;
using inferq::supervisor::next_sample_wait;
using std::chrono::milliseconds;

TEST_CASE("a quick sample waits the configured interval") {
  CHECK(next_sample_wait(milliseconds(5000), milliseconds(0)) == milliseconds(5000));
  CHECK(next_sample_wait(milliseconds(5000), milliseconds(20)) == milliseconds(5000));
  CHECK(next_sample_wait(milliseconds(1000), milliseconds(50)) == milliseconds(1000));
}

TEST_CASE("a slow sample (a huge backlog) stretches the wait, bounding the sampler's share of a backend") {
  CHECK(next_sample_wait(milliseconds(5000), milliseconds(300)) == milliseconds(300 * kSampleDutyFactor));
  CHECK(next_sample_wait(milliseconds(1000), milliseconds(3000)) == milliseconds(3000 * kSampleDutyFactor));
  // Busy at most 1 / (1 + k) of the time.
  const milliseconds took(700);
  const auto wait = next_sample_wait(milliseconds(5000), took);
  CHECK(static_cast<double>(took.count()) / static_cast<double>(took.count() + wait.count()) <=
        1.0 / (1 + kSampleDutyFactor));
}
