#pragma once

#include <string_view>

namespace inferq::util {

// True when `text` is exactly one JSON value (RFC 8259), whitespace around it
// allowed, nested at most `max_depth` arrays and objects deep. Checks syntax
// only: it builds nothing, so it costs one pass over the text.
bool is_one_json_value(std::string_view text, int max_depth = 512);

}  // namespace inferq::util
