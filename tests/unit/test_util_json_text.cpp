// The one JSON string writer (src/util/json_text): every reader, jsonb
// included, must accept what it writes, whatever bytes it is given.
#include <doctest.h>

#include <string>

#include "util/json_text.hpp"

using inferq::util::append_json_string;
using inferq::util::json_string;

TEST_CASE("json_string quotes and escapes what JSON requires") {
  CHECK(json_string("plain") == "\"plain\"");
  CHECK(json_string("") == "\"\"");
  CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(json_string("line\nnext\ttab\rret") == "\"line\\nnext\\ttab\\rret\"");
  CHECK(json_string(std::string("\x01\x1f", 2)) == "\"\\u0001\\u001f\"");
}

TEST_CASE("json_string keeps valid UTF-8 and replaces what jsonb would refuse") {
  CHECK(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  CHECK(json_string(std::string("a\0b", 3)) == "\"a\\ufffdb\"");                 // NUL
  CHECK(json_string("\xff") == "\"\\ufffd\"");                                   // not a lead byte
  CHECK(json_string("\xc3") == "\"\\ufffd\"");                                   // cut short
  CHECK(json_string("\xc0\xaf") == "\"\\ufffd\\ufffd\"");                        // overlong
  CHECK(json_string("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");             // a surrogate
  CHECK(json_string("\xf4\x90\x80\x80") == "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  // above U+10FFFF
}

TEST_CASE("append_json_string appends to what is there") {
  std::string out = "{\"k\":";
  append_json_string(out, "v");
  CHECK(out == "{\"k\":\"v\"");
}
