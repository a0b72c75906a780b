#include "util/json_check.hpp"

#include <doctest.h>

#include <string>

using inferq::util::is_one_json_value;

TEST_CASE("one JSON value, with whitespace around it, is accepted") {
  for (const char* ok : {"null", "true", "false", "0", "-1.5e+3", "\"a\\\"b\\u00e9\"", "[]", "{}",
                         " [1, {\"a\": [null]}] ", R"({"model_name":"m","outputs":[{"data":[0.1,"NaN"]}]})"})
    CHECK_MESSAGE(is_one_json_value(ok), ok);
}

TEST_CASE("anything that could add keys to the document around it is refused") {
  for (const char* bad :
       {"", "1,\"ok\":false", "{},\"id\":7", "{\"a\":1}}", "[1,2", "\"open", "1 2", "{\"a\" 1}", "{a:1}",
        "01", "1.", "-", "NaN", "[1,]", "{\"a\":1,}", "\"\x01\"", "\"\\x\"", "tru"})
    CHECK_MESSAGE(!is_one_json_value(bad), bad);
}

TEST_CASE("nesting is bounded") {
  CHECK(is_one_json_value(std::string(10, '[') + std::string(10, ']'), 10));
  CHECK(!is_one_json_value(std::string(11, '[') + std::string(11, ']'), 10));
  CHECK(!is_one_json_value(std::string(100000, '[') + std::string(100000, ']')));
}
