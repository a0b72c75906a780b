#pragma once

#include <string>
#include <string_view>

namespace inferq::db {

// Appends `s` as a JSON string literal (quoted, escaped). Invalid UTF-8 bytes
// are replaced with U+FFFD so PostgreSQL always accepts the document.
void append_json_string(std::string& out, std::string_view s);

}  // namespace inferq::db
