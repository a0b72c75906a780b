#include "util/duration.hpp"

#include <array>
#include <cstdint>
#include <limits>

namespace inferq::util {
namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t ms;
};

// Largest first: format_duration takes the first unit that fits exactly.
constexpr std::array<Unit, 5> kUnits{{
    {"d", 86'400'000},
    {"h", 3'600'000},
    {"m", 60'000},
    {"s", 1'000},
    {"ms", 1},
}};

// More fraction digits than this cannot matter at millisecond resolution
// (an hour is 3.6e6 ms) and would overflow the arithmetic below.
constexpr std::size_t kMaxFractionDigits = 9;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

  // Integer and fraction are read as integers, not as a double, so "1.1s"
  // is exactly 1100ms and overflow is detected exactly.
  std::size_t i = 0;
  std::int64_t whole = 0;
  const std::size_t whole_begin = i;
  for (; i < text.size() && is_digit(text[i]); ++i) {
    const int digit = text[i] - '0';
    if (whole > (kMax - digit) / 10) return std::nullopt;
    whole = whole * 10 + digit;
  }
  if (i == whole_begin) return std::nullopt;  // also rejects "-5s", "+5s", ".5s"

  std::string_view fraction;
  if (i < text.size() && text[i] == '.') {
    const std::size_t begin = ++i;
    while (i < text.size() && is_digit(text[i])) ++i;
    fraction = text.substr(begin, i - begin);
    if (fraction.empty()) return std::nullopt;  // "5.s"
    while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
    if (fraction.size() > kMaxFractionDigits) return std::nullopt;
  }

  const std::string_view suffix = text.substr(i);
  for (const Unit& unit : kUnits) {
    if (suffix != unit.suffix) continue;
    std::int64_t numerator = 0;
    std::int64_t denominator = 1;
    for (char c : fraction) {
      numerator = numerator * 10 + (c - '0');
      denominator *= 10;
    }
    // Below a millisecond cannot be represented; refuse rather than round.
    if ((numerator * unit.ms) % denominator != 0) return std::nullopt;
    const std::int64_t fraction_ms = numerator * unit.ms / denominator;
    if (whole > (kMax - fraction_ms) / unit.ms) return std::nullopt;
    return std::chrono::milliseconds(whole * unit.ms + fraction_ms);
  }
  return std::nullopt;  // no unit, unknown unit or trailing garbage
}

std::string format_duration(std::chrono::milliseconds d) {
  const std::int64_t count = d.count();
  if (count == 0) return "0ms";
  std::string sign = count < 0 ? "-" : "";
  // Unsigned, so the magnitude of the most negative value is representable.
  const std::uint64_t magnitude =
      count < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(count) : static_cast<std::uint64_t>(count);

  for (const Unit& unit : kUnits) {
    const auto unit_ms = static_cast<std::uint64_t>(unit.ms);
    if (magnitude < unit_ms) continue;
    // Exact in this unit with at most three decimals ("1.5s", "1.25m"); a
    // smaller unit is chosen otherwise, so the text always parses back exactly.
    const std::uint64_t remainder = magnitude % unit_ms;
    if ((remainder * 1000) % unit_ms != 0) continue;
    std::string text = sign + std::to_string(magnitude / unit_ms);
    if (remainder != 0) {
      std::string decimals = std::to_string(1000 + remainder * 1000 / unit_ms).substr(1);
      while (decimals.back() == '0') decimals.pop_back();
      text += "." + decimals;
    }
    return text + std::string(unit.suffix);
  }
  return sign + std::to_string(magnitude) + "ms";  // unreachable: ms always fits
}

}  // namespace inferq::util
