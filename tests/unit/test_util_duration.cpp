#include "util/duration.hpp"

#include <doctest.h>

#include <cstdint>
#include <limits>

using inferq::util::format_duration;
using inferq::util::parse_duration;
using std::chrono::milliseconds;

TEST_CASE("parse_duration reads every unit") {
  CHECK(parse_duration("250ms") == milliseconds(250));
  CHECK(parse_duration("30s") == milliseconds(30'000));
  CHECK(parse_duration("5m") == milliseconds(300'000));
  CHECK(parse_duration("1h") == milliseconds(3'600'000));
  CHECK(parse_duration("7d") == milliseconds(7 * 86'400'000LL));
  CHECK(parse_duration("0s") == milliseconds(0));
  CHECK(parse_duration("007s") == milliseconds(7'000));
}

TEST_CASE("parse_duration reads exact fractions") {
  CHECK(parse_duration("1.5s") == milliseconds(1'500));
  CHECK(parse_duration("0.25m") == milliseconds(15'000));
  CHECK(parse_duration("1.001s") == milliseconds(1'001));
  CHECK(parse_duration("2.5h") == milliseconds(9'000'000));
  CHECK(parse_duration("1.000000000000s") == milliseconds(1'000));  // trailing zeros are harmless
}

TEST_CASE("parse_duration rejects what is not a duration") {
  for (const char* text :
       {"",    "30",   "1.5", "s",  "ms",  "-5s",   "+5s", "-0s",  ".5s",  "5.s",   "5 s",  " 5s",
        "5s ", "5sec", "5S",  "5D", "5us", "1m30s", "abc", "soon", "5ms5", "1..5s", "0x10s"}) {
    CAPTURE(text);
    CHECK_FALSE(parse_duration(text).has_value());
  }
}

TEST_CASE("parse_duration rejects below-millisecond precision instead of rounding") {
  CHECK_FALSE(parse_duration("1.5ms").has_value());
  CHECK_FALSE(parse_duration("1.0001s").has_value());
  CHECK_FALSE(parse_duration("0.0000000001h").has_value());
}

TEST_CASE("parse_duration rejects overflow") {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  CHECK(parse_duration(std::to_string(kMax) + "ms") == milliseconds(kMax));
  CHECK_FALSE(parse_duration("9223372036854775808ms").has_value());
  CHECK_FALSE(parse_duration(std::to_string(kMax) + "s").has_value());
  CHECK_FALSE(parse_duration("99999999999999999999999999h").has_value());
  CHECK_FALSE(parse_duration(std::to_string(kMax / 1000) + ".999s").has_value());
}

TEST_CASE("format_duration picks the largest exact unit") {
  CHECK(format_duration(milliseconds(0)) == "0ms");
  CHECK(format_duration(milliseconds(250)) == "250ms");
  CHECK(format_duration(milliseconds(1'000)) == "1s");
  CHECK(format_duration(milliseconds(1'500)) == "1.5s");
  CHECK(format_duration(milliseconds(1'234)) == "1.234s");
  CHECK(format_duration(milliseconds(30'000)) == "30s");
  CHECK(format_duration(milliseconds(61'000)) == "61s");
  CHECK(format_duration(milliseconds(90'000)) == "1.5m");
  CHECK(format_duration(milliseconds(300'000)) == "5m");
  CHECK(format_duration(milliseconds(3'600'000)) == "1h");
  CHECK(format_duration(milliseconds(86'400'000)) == "1d");
  CHECK(format_duration(milliseconds(36 * 3'600'000)) == "1.5d");
  CHECK(format_duration(milliseconds(3'601'000)) == "3601s");
  CHECK(format_duration(milliseconds(-1'500)) == "-1.5s");
}

TEST_CASE("format_duration output parses back to the same value") {
  const std::int64_t samples[] = {
      1,      999,       1'001,     59'999,     60'001,
      90'500, 3'599'999, 5'400'000, 86'400'000, std::numeric_limits<std::int64_t>::max()};
  for (std::int64_t ms : samples) {
    CAPTURE(ms);
    CHECK(parse_duration(format_duration(milliseconds(ms))) == milliseconds(ms));
  }
  for (std::int64_t ms = 0; ms < 200'000; ms += 7) {
    REQUIRE(parse_duration(format_duration(milliseconds(ms))) == milliseconds(ms));
  }
}

TEST_CASE("format_duration handles the most negative value") {
  const auto min = milliseconds(std::numeric_limits<std::int64_t>::min());
  CHECK(format_duration(min) == "-9223372036854775.808s");
}
