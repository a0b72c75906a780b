#pragma once

#include <string>
#include <string_view>

namespace inferq::util {

// "a, b, c": for messages that list names (keys, queues, types).
template <typename Names>
std::string join(const Names& names, std::string_view separator = ", ") {
  std::string out;
  for (const auto& name : names) {
    if (!out.empty()) out += separator;
    out += name;
  }
  return out;
}

}  // namespace inferq::util
