#include "executor/payload.hpp"

#include <doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using namespace inferq::executor;

namespace {

InputSpec spec(const std::string& name, DataType type, std::vector<std::int64_t> shape,
               bool allow_non_finite = false) {
  InputSpec s;
  s.name = name;
  s.datatype = type;
  s.shape = std::move(shape);
  s.allow_non_finite = allow_non_finite;
  return s;
}

std::string error_of(const std::string& json, const std::vector<InputSpec>& specs) {
  const DecodedPayload p = decode_payload(json, specs);
  return p.error;
}

template <typename T>
std::vector<T> values(const DecodedTensor& t) {
  std::vector<T> out(t.bytes.size() / sizeof(T));
  std::memcpy(out.data(), t.bytes.data(), t.bytes.size());
  return out;
}

const std::vector<InputSpec> kXy{spec("x", DataType::kFP32, {3}), spec("ids", DataType::kINT64, {-1})};

}  // namespace

TEST_CASE("decodes every datatype, keys in any order, with or without the batch dimension") {
  // jsonb's key order (shortest first) puts data before shape and datatype.
  const auto p = decode_payload(
      R"({"id": "r1", "inputs": [{"data": [1.5, -2, 3e2], "name": "x", "shape": [1, 3], "datatype": "FP32"},
          {"name": "ids", "datatype": "INT64", "shape": [4], "data": [1, 2, 9007199254740993, -4],
           "parameters": {"a": [1, {"b": null}]}}], "outputs": []})",
      kXy);
  REQUIRE(p.ok());
  REQUIRE(p.tensors.size() == 2);
  CHECK(p.tensors[0].shape == std::vector<std::int64_t>{3});
  CHECK(values<float>(p.tensors[0]) == std::vector<float>{1.5f, -2.0f, 300.0f});
  CHECK(p.tensors[1].shape == std::vector<std::int64_t>{4});
  CHECK(values<std::int64_t>(p.tensors[1]) == std::vector<std::int64_t>{1, 2, 9007199254740993LL, -4});

  const std::vector<InputSpec> all{spec("a", DataType::kFP16, {2}),  spec("b", DataType::kFP64, {1}),
                                   spec("c", DataType::kINT32, {2}), spec("d", DataType::kINT8, {2}),
                                   spec("e", DataType::kUINT8, {2}), spec("f", DataType::kBOOL, {3})};
  const auto q = decode_payload(R"({"inputs": [
      {"name": "a", "datatype": "FP16", "shape": [2], "data": [0.5, -65504]},
      {"name": "b", "datatype": "FP64", "shape": [1], "data": [0.1]},
      {"name": "c", "datatype": "INT32", "shape": [2], "data": [-2147483648, 2147483647]},
      {"name": "d", "datatype": "INT8", "shape": [2], "data": [-128, 127]},
      {"name": "e", "datatype": "UINT8", "shape": [2], "data": [0, 255]},
      {"name": "f", "datatype": "BOOL", "shape": [3], "data": [true, false, true]}]})",
                                all);
  REQUIRE(q.ok());
  const auto halves = values<std::uint16_t>(q.tensors[0]);
  CHECK(half_to_float(halves[0]) == 0.5f);
  CHECK(half_to_float(halves[1]) == -65504.0f);
  CHECK(values<double>(q.tensors[1]) == std::vector<double>{0.1});
  CHECK(values<std::int32_t>(q.tensors[2]) == std::vector<std::int32_t>{INT32_MIN, INT32_MAX});
  CHECK(values<std::int8_t>(q.tensors[3]) == std::vector<std::int8_t>{-128, 127});
  CHECK(values<std::uint8_t>(q.tensors[4]) == std::vector<std::uint8_t>{0, 255});
  CHECK(values<std::uint8_t>(q.tensors[5]) == std::vector<std::uint8_t>{1, 0, 1});
}

TEST_CASE("every bad payload is an error naming the input and what was expected") {
  const std::string ok_ids = R"({"name": "ids", "datatype": "INT64", "shape": [2], "data": [1, 2]})";
  const auto with_x = [&](const std::string& x) { return R"({"inputs": [)" + x + ", " + ok_ids + "]}"; };

  CHECK(error_of(R"({"inputs": [)" + ok_ids + "]}", kXy) == "input \"x\" is missing (expected FP32 [3])");
  CHECK(error_of(with_x(R"({"name": "y", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]})"), kXy) ==
        "unknown input \"y\" (this model takes \"x\", \"ids\")");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]})"), kXy) ==
        "input \"x\": expected datatype FP32, got \"INT64\"");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [4], "data": [1, 2, 3, 4]})"), kXy) ==
        "input \"x\": expected shape [3] or [1, 3] (-1: any length from 1), got [4]");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]})"),
                 kXy) == "input \"x\": expected shape [3] or [1, 3] (-1: any length from 1), got [2, 3]");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2]})"), kXy) ==
        "input \"x\": data has 2 values, expected 3 (the product of its shape)");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3, 4, 5]})"),
                 kXy) == "input \"x\": data has 5 values, expected 3 (the product of its shape)");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, "two", 3]})"), kXy) ==
        "input \"x\": data[1]: expected a number (FP32), got \"two\"");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, true, 3]})"), kXy) ==
        "input \"x\": data[1]: expected a number (FP32), got true");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, [2], 3]})"), kXy) ==
        "input \"x\": data[1]: data must be a flat list of numbers (row-major)");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 1e39]})"), kXy) ==
        "input \"x\": data[2]: 1e39 is not a finite FP32 value, and this input does not allow non-finite "
        "values "
        "(allow_non_finite: false)");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, "NaN", 3]})"), kXy) ==
        "input \"x\": data[1]: \"NaN\" is not a finite FP32 value, and this input does not allow non-finite "
        "values "
        "(allow_non_finite: false)");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]},
                           {"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]})"),
                 kXy) == "input \"x\" is given twice");
  CHECK(error_of(with_x(R"({"name": "x", "shape": [3], "data": [1, 2, 3]})"), kXy) ==
        "input \"x\": missing datatype (expected FP32)");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "data": [1, 2, 3]})"), kXy) ==
        "input \"x\": missing shape (expected FP32 [3])");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [3]})"), kXy) ==
        "input \"x\": missing data (or parameters.binary_data_size)");
  CHECK(error_of(with_x(R"({"name": "x", "datatype": "FP32", "shape": [-3], "data": []})"), kXy) ==
        "input \"x\": shape must be a list of non-negative integers, got \"-3\"");
  CHECK(error_of(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]},
                    {"name": "ids", "datatype": "INT64", "shape": [0], "data": []}]})",
                 kXy) == "input \"ids\": expected shape [-1] or [1, -1] (-1: any length from 1), got [0]");
  CHECK(error_of(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]},
                    {"name": "ids", "datatype": "INT64", "shape": [2], "data": [1, 2.5]}]})",
                 kXy) == "input \"ids\": data[1]: expected an integer (INT64), got 2.5");
  CHECK(
      error_of(
          R"({"inputs": [{"name": "ids", "datatype": "INT64", "shape": [1], "data": [99999999999999999999]}]})",
          {spec("ids", DataType::kINT64, {1})}) ==
      "input \"ids\": data[0]: expected an integer (INT64), got 99999999999999999999");
  CHECK(error_of(R"({"inputs": [{"name": "b", "datatype": "UINT8", "shape": [1], "data": [256]}]})",
                 {spec("b", DataType::kUINT8, {1})}) ==
        "input \"b\": data[0]: expected an integer in UINT8 range (0..255), got 256");
  CHECK(error_of(R"({"inputs": [{"name": "b", "datatype": "BOOL", "shape": [1], "data": ["yes"]}]})",
                 {spec("b", DataType::kBOOL, {1})}) ==
        "input \"b\": data[0]: expected true or false (BOOL), got \"yes\"");
  CHECK(error_of(R"({"inputs": [{"name": "h", "datatype": "FP16", "shape": [1], "data": [70000]}]})",
                 {spec("h", DataType::kFP16, {1})}) ==
        "input \"h\": data[0]: 70000 is not a finite FP16 value, and this input does not allow non-finite "
        "values "
        "(allow_non_finite: false)");
  CHECK(error_of(R"({"other": 1})", kXy) ==
        "payload has no \"inputs\" list (expected inputs \"x\", \"ids\")");
  CHECK(error_of(R"({"inputs": {"x": 1}})", kXy) ==
        "payload: \"inputs\" must be a list of {name, shape, datatype, data}");
  CHECK(error_of(R"({"inputs": [{"name": )", kXy).rfind("payload is not valid JSON at byte ", 0) == 0);
  CHECK(error_of(R"({"inputs": []} x)", kXy) ==
        "payload is not valid JSON at byte 15: text after the payload object");
}

TEST_CASE("non-finite values pass where the input allows them; tiny values underflow to zero") {
  const std::vector<InputSpec> specs{spec("x", DataType::kFP32, {4}, /*allow_non_finite=*/true)};
  const auto p = decode_payload(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [4],
                                     "data": ["NaN", "Infinity", "-Infinity", 1e39]}]})",
                                specs);
  REQUIRE(p.ok());
  const auto v = values<float>(p.tensors[0]);
  CHECK(std::isnan(v[0]));
  CHECK(v[1] == std::numeric_limits<float>::infinity());
  CHECK(v[2] == -std::numeric_limits<float>::infinity());
  CHECK(v[3] == std::numeric_limits<float>::infinity());
  const auto q = decode_payload(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [4],
                                                "data": [1e-50, -1e-50, 0, -0.0]}]})",
                                {spec("x", DataType::kFP32, {4})});
  REQUIRE(q.ok());
  CHECK(values<float>(q.tensors[0]) == std::vector<float>{0, 0, 0, 0});
}

TEST_CASE(
    "results are written in the protocol's form, floats shortest round-trip, non-finite as the strings "
    "inputs accept") {
  const float f[] = {0.1f, -2.5f, NAN, 1e30f, INFINITY, -INFINITY};
  const std::int64_t ids[] = {7, -1};
  const unsigned char flags[] = {1, 0};
  const std::uint16_t halves[] = {float_to_half(1.5f)};
  std::string out;
  encode_result(
      out, "enc\"oder",
      {OutputView{"y", DataType::kFP32, {2, 3}, f}, OutputView{"ids", DataType::kINT64, {2}, ids},
       OutputView{"m", DataType::kBOOL, {2}, flags}, OutputView{"h", DataType::kFP16, {1}, halves}});
  CHECK(out == R"({"model_name":"enc\"oder","outputs":[{"name":"y","shape":[2,3],"datatype":"FP32",)"
               R"("data":[0.1,-2.5,"NaN",1e+30,"Infinity","-Infinity"]},)"
               R"({"name":"ids","shape":[2],"datatype":"INT64","data":[7,-1]},)"
               R"({"name":"m","shape":[2],"datatype":"BOOL","data":[true,false]},)"
               R"({"name":"h","shape":[1],"datatype":"FP16","data":[1.5]}]})");
}

TEST_CASE("FP16 conversion rounds to nearest even and keeps subnormals, infinities and NaN") {
  CHECK(float_to_half(1.0f) == 0x3C00);
  CHECK(float_to_half(65504.0f) == 0x7BFF);
  CHECK(float_to_half(65520.0f) == 0x7C00);
  CHECK(float_to_half(-0.0f) == 0x8000);
  CHECK(float_to_half(5.960464477539063e-08f) == 0x0001);  // smallest subnormal
  CHECK(float_to_half(1.0f + 1.0f / 2048) == 0x3C00);      // a tie rounds to even
  CHECK(float_to_half(1.0f + 3.0f / 2048) == 0x3C02);
  CHECK(std::isnan(half_to_float(float_to_half(NAN))));
  for (std::uint32_t h = 0; h < 0x7C00; ++h) {
    CHECK(float_to_half(half_to_float(static_cast<std::uint16_t>(h))) == h);
  }
}

namespace {

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string binary_error(const std::string& json, const std::string& binary,
                         const std::vector<InputSpec>& specs) {
  return decode_payload(json, specs, binary).error;
}

}  // namespace

TEST_CASE(
    "binary data (parameters.binary_data_size) is taken from payload_binary in the JSON's input order") {
  // "ids" comes first in the JSON, so its bytes come first, whatever the spec order.
  const std::string binary =
      bytes_of<std::int64_t>({5, -1, INT64_MAX}) + bytes_of<float>({0.5f, -0.0f, 3e38f});
  const auto p = decode_payload(
      R"({"inputs": [{"name": "ids", "datatype": "INT64", "shape": [3], "parameters": {"binary_data_size": 24}},
                     {"parameters": {"other": [1], "binary_data_size": 12}, "name": "x", "datatype": "FP32",
                      "shape": [1, 3]}]})",
      kXy, binary);
  REQUIRE(p.ok());
  CHECK(values<float>(p.tensors[0]) == std::vector<float>{0.5f, -0.0f, 3e38f});
  CHECK(std::signbit(values<float>(p.tensors[0])[1]));
  CHECK(values<std::int64_t>(p.tensors[1]) == std::vector<std::int64_t>{5, -1, INT64_MAX});
  CHECK(p.tensors[1].shape == std::vector<std::int64_t>{3});

  SUBCASE("JSON and binary inputs mix in one payload") {
    const auto q = decode_payload(
        R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1, 2, 3]},
                       {"name": "ids", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}}]})",
        kXy, bytes_of<std::int64_t>({42}));
    REQUIRE(q.ok());
    CHECK(values<float>(q.tensors[0]) == std::vector<float>{1, 2, 3});
    CHECK(values<std::int64_t>(q.tensors[1]) == std::vector<std::int64_t>{42});
  }
}

TEST_CASE("bad binary data fails the job with a message naming the input") {
  const std::vector<InputSpec> one{spec("x", DataType::kFP32, {2})};
  const std::string two_floats = bytes_of<float>({1, 2});
  const auto x_json = [](const std::string& size, const std::string& datatype = "FP32") {
    return R"({"inputs": [{"name": "x", "datatype": ")" + datatype +
           R"(", "shape": [2], "parameters": {"binary_data_size": )" + size + "}}]}";
  };
  CHECK(binary_error(x_json("8"), two_floats, one).empty());
  CHECK(binary_error(x_json("4"), two_floats.substr(0, 4), one) ==
        "input \"x\": binary_data_size is 4 bytes, expected 8 (shape [2] of FP32, 4 byte(s) each)");
  CHECK(binary_error(x_json("-8"), two_floats, one) ==
        "input \"x\": parameters.binary_data_size must be a non-negative integer, got \"-8\"");
  CHECK(
      binary_error(x_json("8.5"), two_floats, one).find("input \"x\": parameters.binary_data_size must be") ==
      0);
  CHECK(binary_error(x_json("8"), two_floats.substr(0, 7), one) ==
        "input \"x\": binary_data_size 8 at byte 0 runs past the end of the payload_binary (7 bytes)");
  CHECK(binary_error(x_json("8"), two_floats + "z", one) ==
        "payload_binary has 9 bytes, 1 more than the binary_data_size of input(s) \"x\" add up to (8)");
  CHECK(binary_error(x_json("8", "FP64"), two_floats, one) ==
        "input \"x\": expected datatype FP32, got \"FP64\"");
  CHECK(binary_error(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2]}]})", "ab",
                     one) == "payload_binary has 2 bytes, but no input has parameters.binary_data_size");
  CHECK(binary_error(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1, 2],
                                     "parameters": {"binary_data_size": 8}}]})",
                     two_floats,
                     one) == "input \"x\": has both data and parameters.binary_data_size; give one of them");
  CHECK(binary_error(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2]}]})", "", one) ==
        "input \"x\": missing data (or parameters.binary_data_size)");
  CHECK(binary_error(R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "parameters": 3}]})", "",
                     one)
            .find("an input's parameters must be an object") != std::string::npos);

  SUBCASE("values are checked as JSON numbers are") {
    const std::string nan = bytes_of<float>({1, std::numeric_limits<float>::quiet_NaN()});
    CHECK(binary_error(x_json("8"), nan, one).find("input \"x\": binary data element 1: ") == 0);
    CHECK(binary_error(x_json("8"), nan, {spec("x", DataType::kFP32, {2}, true)}).empty());
    const std::vector<InputSpec> flags{spec("m", DataType::kBOOL, {2})};
    const std::string m_json =
        R"({"inputs": [{"name": "m", "datatype": "BOOL", "shape": [2], "parameters": {"binary_data_size": 2}}]})";
    CHECK(binary_error(m_json, std::string("\x01\x00", 2), flags).empty());
    CHECK(binary_error(m_json, std::string("\x01\x02", 2), flags) ==
          "input \"m\": binary data element 1: a BOOL byte must be 0 or 1, got 2");
    const std::vector<InputSpec> halves{spec("h", DataType::kFP16, {1})};
    const std::string h_json =
        R"({"inputs": [{"name": "h", "datatype": "FP16", "shape": [1], "parameters": {"binary_data_size": 2}}]})";
    CHECK(binary_error(h_json, bytes_of<std::uint16_t>({0x7C00}), halves)
              .find("input \"h\": binary data element 0") == 0);
    CHECK(binary_error(h_json, bytes_of<std::uint16_t>({0x3C00}), halves).empty());
  }
}

TEST_CASE("binary outputs: each output's bytes appended in order, its entry giving binary_data_size") {
  const float f[] = {0.5f, NAN};
  const std::int64_t ids[] = {7, -1, 3};
  const std::uint16_t halves[] = {0x3C00};
  std::string out;
  std::string binary = "kept";
  encode_result(out, "m",
                {OutputView{"y", DataType::kFP32, {2}, f}, OutputView{"ids", DataType::kINT64, {3}, ids},
                 OutputView{"h", DataType::kFP16, {1}, halves}},
                &binary);
  CHECK(out == R"({"model_name":"m","outputs":[)"
               R"({"name":"y","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}},)"
               R"({"name":"ids","shape":[3],"datatype":"INT64","parameters":{"binary_data_size":24}},)"
               R"({"name":"h","shape":[1],"datatype":"FP16","parameters":{"binary_data_size":2}}]})");
  CHECK(binary == "kept" + std::string(reinterpret_cast<const char*>(f), 8) +
                      std::string(reinterpret_cast<const char*>(ids), 24) +
                      std::string(reinterpret_cast<const char*>(halves), 2));
}
