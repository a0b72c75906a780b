#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace inferq::util {

// Parses "250ms", "30s", "5m", "1h" (also "1.5s"); no unit or a negative
// value is rejected. Returns nullopt when the text is not a duration.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// Formats the way parse_duration reads: "30s", "250ms", "5m", "1.5s".
std::string format_duration(std::chrono::milliseconds d);

}  // namespace inferq::util
