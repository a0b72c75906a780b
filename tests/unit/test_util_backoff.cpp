#include "util/backoff.hpp"

#include <doctest.h>

#include <cstdint>
#include <limits>
#include <vector>

using inferq::util::Backoff;
using inferq::util::retry_delay;
using std::chrono::milliseconds;

namespace {

constexpr milliseconds kBase{1'000};
constexpr milliseconds kMax{300'000};

}  // namespace

TEST_CASE("retry_delay doubles per attempt up to max") {
  // jitter_unit just below 1 gives (almost) the full delay.
  const double kTop = 0.999999;
  CHECK(retry_delay(1, kBase, kMax, kTop) == milliseconds(999));
  CHECK(retry_delay(2, kBase, kMax, kTop) == milliseconds(1'999));
  CHECK(retry_delay(3, kBase, kMax, kTop) == milliseconds(3'999));
  CHECK(retry_delay(9, kBase, kMax, kTop) == milliseconds(255'999));
  CHECK(retry_delay(10, kBase, kMax, kTop) == milliseconds(299'999));
  CHECK(retry_delay(50, kBase, kMax, kTop) == milliseconds(299'999));
}

TEST_CASE("retry_delay jitter spans half to all of the delay") {
  CHECK(retry_delay(1, kBase, kMax, 0.0) == milliseconds(500));
  CHECK(retry_delay(1, kBase, kMax, 0.5) == milliseconds(750));
  CHECK(retry_delay(3, kBase, kMax, 0.0) == milliseconds(2'000));
  CHECK(retry_delay(20, kBase, kMax, 0.0) == milliseconds(150'000));
  for (double unit = 0.0; unit < 1.0; unit += 0.01) {
    const milliseconds d = retry_delay(4, kBase, kMax, unit);
    CHECK(d >= milliseconds(4'000));
    CHECK(d <= milliseconds(8'000));
  }
}

TEST_CASE("retry_delay clamps odd inputs") {
  CHECK(retry_delay(0, kBase, kMax, 0.0) == milliseconds(500));  // attempt below 1 counts as 1
  CHECK(retry_delay(-7, kBase, kMax, 0.0) == milliseconds(500));
  CHECK(retry_delay(1, kBase, kMax, -3.0) == milliseconds(500));  // jitter clamped into [0, 1)
  CHECK(retry_delay(1, kBase, kMax, 1.0) == milliseconds(999));
  CHECK(retry_delay(1, kBase, kMax, 42.0) == milliseconds(999));
  CHECK(retry_delay(1, kBase, kMax, std::numeric_limits<double>::quiet_NaN()) == milliseconds(500));
  CHECK(retry_delay(1, milliseconds(0), kMax, 0.5) == milliseconds(0));
  CHECK(retry_delay(1, milliseconds(-5), kMax, 0.5) == milliseconds(0));
  CHECK(retry_delay(1, kBase, milliseconds(400), 0.0) == milliseconds(200));  // max below base caps
}

TEST_CASE("retry_delay does not overflow for huge attempts or limits") {
  const milliseconds huge = milliseconds::max();
  for (int attempt : {30, 62, 63, 64, 100, 10'000, std::numeric_limits<int>::max()}) {
    CAPTURE(attempt);
    CHECK(retry_delay(attempt, kBase, kMax, 0.0) == milliseconds(150'000));
    const milliseconds d = retry_delay(attempt, kBase, huge, 0.999999);
    CHECK(d > milliseconds(0));
    CHECK(d <= huge);
    CHECK(retry_delay(attempt, huge, huge, 0.999999) <= huge);
  }
  CHECK(retry_delay(63, milliseconds(1), huge, 0.0) == milliseconds(std::int64_t{1} << 61));  // 2^62 / 2
}

TEST_CASE("Backoff doubles to max and reset starts over") {
  Backoff backoff(kBase, milliseconds(8'000), /*seed=*/42);
  const std::vector<milliseconds> ceilings{milliseconds(1'000), milliseconds(2'000), milliseconds(4'000),
                                           milliseconds(8'000), milliseconds(8'000), milliseconds(8'000)};
  for (const milliseconds ceiling : ceilings) {
    const milliseconds d = backoff.next();
    CHECK(d >= ceiling / 2);
    CHECK(d <= ceiling);
  }
  CHECK(backoff.attempts() == 6);
  backoff.reset();
  CHECK(backoff.attempts() == 0);
  const milliseconds first = backoff.next();
  CHECK(first >= milliseconds(500));
  CHECK(first <= milliseconds(1'000));
}

TEST_CASE("Backoff with the same seed repeats its delays") {
  Backoff a(kBase, kMax, 7);
  Backoff b(kBase, kMax, 7);
  Backoff c(kBase, kMax, 8);
  bool any_differs = false;
  for (int i = 0; i < 20; ++i) {
    const milliseconds da = a.next();
    CHECK(da == b.next());
    any_differs = any_differs || da != c.next();
  }
  CHECK(any_differs);
}

TEST_CASE("Backoff keeps returning max after very many attempts") {
  Backoff backoff(kBase, kMax, 1);
  for (int i = 0; i < 10'000; ++i) backoff.next();
  const milliseconds d = backoff.next();
  CHECK(d >= kMax / 2);
  CHECK(d <= kMax);
}
