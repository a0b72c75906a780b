#pragma once

#include <string>
#include <string_view>

namespace inferq::util {

// The one JSON string writer (logs, completion documents, results, `inferq
// status --json`, messages that quote a name).
//
// Appends `s` as a JSON string literal (quoted, escaped). Invalid UTF-8 bytes
// and NUL are replaced with U+FFFD so PostgreSQL's jsonb (and any JSON
// reader) always accepts the text.
void append_json_string(std::string& out, std::string_view s);

// `s` as a JSON string literal, as append_json_string writes it.
std::string json_string(std::string_view s);

}  // namespace inferq::util
