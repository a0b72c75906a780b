#include "executor/payload.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "util/json_text.hpp"

namespace inferq::executor {
namespace {

constexpr const char* kNames[] = {"FP32", "FP16", "FP64", "INT64", "INT32", "INT8", "UINT8", "BOOL"};
constexpr std::size_t kSizes[] = {4, 2, 8, 8, 4, 1, 1, 1};

// A malformed payload: what() is the whole message for the job.
struct BadPayload : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A name in a message, quoted as JSON writes it (a quote or control
// character in it cannot break the message's text).
std::string quoted(std::string_view s) { return util::json_string(s); }

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// A forward-only reader over JSON text. Each method skips leading whitespace.
class Scanner {
 public:
  explicit Scanner(std::string_view text)
      : p_(text.data()), begin_(text.data()), end_(text.data() + text.size()) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw BadPayload("payload is not valid JSON at byte " + std::to_string(p_ - begin_) + ": " + what);
  }

  void skip_ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\t' || *p_ == '\r')) ++p_;
  }
  char peek() {
    skip_ws();
    return p_ < end_ ? *p_ : '\0';
  }
  bool at_end() {
    skip_ws();
    return p_ >= end_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++p_;
  }
  // Consumes `c` if it is next.
  bool accept(char c) {
    if (peek() != c) return false;
    ++p_;
    return true;
  }
  const char* pos() const { return p_; }
  void seek(const char* p) { p_ = p; }

  std::string read_string() {
    expect('"');
    std::string out;
    for (;;) {
      const char* start = p_;
      while (p_ < end_ && *p_ != '"' && *p_ != '\\') ++p_;
      out.append(start, static_cast<std::size_t>(p_ - start));
      if (p_ >= end_) fail("unterminated string");
      if (*p_ == '"') {
        ++p_;
        return out;
      }
      ++p_;  // backslash
      if (p_ >= end_) fail("unterminated string");
      const char e = *p_++;
      switch (e) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          if (end_ - p_ < 4) fail("bad \\u escape");
          unsigned code = 0;
          const auto [ptr, ec] = std::from_chars(p_, p_ + 4, code, 16);
          if (ec != std::errc() || ptr != p_ + 4) fail("bad \\u escape");
          p_ += 4;
          // Names are ASCII in practice; a BMP code point is kept as UTF-8.
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else if (code < 0x800) {
            out += static_cast<char>(0xC0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3F));
          } else {
            out += static_cast<char>(0xE0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (code & 0x3F));
          }
          break;
        }
        default:
          fail("bad escape in string");
      }
    }
  }

  // The text of a scalar token (number or literal), without consuming more.
  std::string_view read_token() {
    skip_ws();
    const char* start = p_;
    while (p_ < end_ && *p_ != ',' && *p_ != ']' && *p_ != '}' && *p_ != ' ' && *p_ != '\n' && *p_ != '\t' &&
           *p_ != '\r')
      ++p_;
    if (p_ == start) fail("expected a value");
    return {start, static_cast<std::size_t>(p_ - start)};
  }

  // Skips one value of any kind.
  void skip_value() {
    const char c = peek();
    if (c == '"') {
      ++p_;
      while (p_ < end_ && *p_ != '"') p_ += (*p_ == '\\') ? 2 : 1;
      if (p_ >= end_) fail("unterminated string");
      ++p_;
    } else if (c == '[' || c == '{') {
      const char close = c == '[' ? ']' : '}';
      ++p_;
      if (accept(close)) return;
      for (;;) {
        if (c == '{') {
          read_string();
          expect(':');
        }
        skip_value();
        if (accept(close)) return;
        expect(',');
      }
    } else {
      read_token();
    }
  }

 private:
  const char* p_;
  const char* begin_;
  const char* end_;
};

// One entry of "inputs" before its data is parsed: the data array's text is
// only located, since its datatype and shape may come after it (jsonb writes
// keys shortest first: "data", "name", "shape", "datatype").
struct RawInput {
  std::string name;
  std::string datatype;
  bool has_shape = false;
  std::vector<std::int64_t> shape;
  const char* data_begin = nullptr;  // at '['
  // parameters.binary_data_size: the input's data is that many bytes of the
  // job's payload_binary, after those of the binary inputs before it.
  std::optional<std::int64_t> binary_data_size;
};

// Reads an input's "parameters" object, keeping binary_data_size.
void read_parameters(Scanner& s, RawInput& in) {
  if (s.peek() != '{') s.fail("an input's parameters must be an object");
  s.expect('{');
  if (s.accept('}')) return;
  for (;;) {
    const std::string key = s.read_string();
    s.expect(':');
    if (key == "binary_data_size") {
      const std::string_view t = s.read_token();
      std::int64_t n = 0;
      const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
      if (ec != std::errc() || ptr != t.data() + t.size() || n < 0) {
        throw BadPayload("input " + quoted(in.name.empty() ? "?" : in.name) +
                         ": parameters.binary_data_size must be a non-negative integer, got " + quoted(t));
      }
      in.binary_data_size = n;
    } else {
      s.skip_value();
    }
    if (s.accept('}')) return;
    s.expect(',');
  }
}

RawInput read_raw_input(Scanner& s) {
  RawInput in;
  s.expect('{');
  if (s.accept('}')) return in;
  for (;;) {
    const std::string key = s.read_string();
    s.expect(':');
    if (key == "name") {
      if (s.peek() != '"') s.fail("an input's name must be a string");
      in.name = s.read_string();
    } else if (key == "datatype") {
      if (s.peek() != '"') s.fail("an input's datatype must be a string");
      in.datatype = s.read_string();
    } else if (key == "shape") {
      s.expect('[');
      in.has_shape = true;
      if (!s.accept(']')) {
        for (;;) {
          const std::string_view t = s.read_token();
          std::int64_t dim = 0;
          const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), dim);
          if (ec != std::errc() || ptr != t.data() + t.size() || dim < 0) {
            throw BadPayload("input " + quoted(in.name.empty() ? "?" : in.name) +
                             ": shape must be a list of non-negative integers, got " + quoted(t));
          }
          in.shape.push_back(dim);
          if (s.accept(']')) break;
          s.expect(',');
        }
      }
    } else if (key == "data") {
      if (s.peek() != '[') s.fail("an input's data must be a list");
      in.data_begin = s.pos();
      s.skip_value();
    } else if (key == "parameters") {
      read_parameters(s, in);
    } else {
      s.skip_value();
    }
    if (s.accept('}')) return in;
    s.expect(',');
  }
}

template <typename Int>
bool parse_int(std::string_view t, Int& out) {
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || ptr != t.data() + t.size()) return false;
  if (v < static_cast<std::int64_t>(std::numeric_limits<Int>::min()) ||
      v > static_cast<std::int64_t>(std::numeric_limits<Int>::max()))
    return false;
  out = static_cast<Int>(v);
  return true;
}

// NaN/Infinity as bare tokens (Python's json) or strings; jsonb allows neither
// bare, so producers going through PostgreSQL use the string form.
std::optional<double> non_finite_literal(std::string_view t) {
  if (t.size() >= 2 && t.front() == '"' && t.back() == '"') t = t.substr(1, t.size() - 2);
  if (t == "NaN" || t == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (t == "Infinity" || t == "inf") return std::numeric_limits<double>::infinity();
  if (t == "-Infinity" || t == "-inf") return -std::numeric_limits<double>::infinity();
  return std::nullopt;
}

// Parses one float token into element `i` of `dst`; throws BadPayload for a
// non-number, or a non-finite value (a literal, or one out of the type's
// range) when the input does not allow them.
void store_float(std::string_view t, const InputSpec& spec, std::size_t i, unsigned char* dst) {
  const DataType type = spec.datatype;
  const auto at = [&] { return "input " + quoted(spec.name) + ": data[" + std::to_string(i) + "]: "; };
  double v = 0;
  float f = 0;
  const char c0 = t.front();
  const bool literal = c0 == '"' || c0 == 'N' || c0 == 'I' || c0 == 'n' || c0 == 'i' ||
                       (t.size() > 1 && c0 == '-' && (t[1] == 'I' || t[1] == 'i'));
  if (literal) {
    const auto lit = non_finite_literal(t);
    if (!lit)
      throw BadPayload(at() + "expected a number (" + datatype_name(type) + "), got " + std::string(t));
    v = *lit;
    f = static_cast<float>(v);
  } else {
    const char* end = t.data() + t.size();
    // FP32 is parsed as float directly: no double rounding.
    const std::from_chars_result r =
        type == DataType::kFP32 ? std::from_chars(t.data(), end, f) : std::from_chars(t.data(), end, v);
    const char* ptr = r.ptr;
    const std::errc ec = r.ec;
    if (ptr != end || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
      throw BadPayload(at() + "expected a number (" + datatype_name(type) + "), got " + std::string(t));
    }
    if (ec == std::errc::result_out_of_range) {
      // The value is left unset: a negative exponent underflowed to zero, else it overflowed.
      const std::size_t e = t.find_first_of("eE");
      const bool underflow = e != std::string_view::npos && e + 1 < t.size() && t[e + 1] == '-';
      v = underflow ? 0.0 : (c0 == '-' ? -HUGE_VAL : HUGE_VAL);
      f = static_cast<float>(v);
    }
    if (type == DataType::kFP32) v = f;
  }
  std::uint16_t h = 0;
  bool finite = true;
  if (type == DataType::kFP64) {
    finite = std::isfinite(v);
  } else if (type == DataType::kFP32) {
    finite = std::isfinite(f);
  } else {
    h = float_to_half(static_cast<float>(v));
    finite = std::isfinite(half_to_float(h));
  }
  if (!finite && !spec.allow_non_finite) {
    throw BadPayload(at() + std::string(t) + " is not a finite " + datatype_name(type) +
                     " value, and this input does not allow non-finite values (allow_non_finite: false)");
  }
  if (type == DataType::kFP64) {
    std::memcpy(dst + i * 8, &v, 8);
  } else if (type == DataType::kFP32) {
    std::memcpy(dst + i * 4, &f, 4);
  } else {
    std::memcpy(dst + i * 2, &h, 2);
  }
}

// Parses a flat array of `count` numbers at `s` into `dst`, as `type`.
void parse_data(Scanner& s, const InputSpec& spec, std::size_t count, unsigned char* dst) {
  const std::string where = "input " + quoted(spec.name) + ": ";
  s.expect('[');
  std::size_t i = 0;
  const auto bad_value = [&](std::string_view t, const std::string& expected) {
    throw BadPayload(where + "data[" + std::to_string(i) + "]: expected " + expected + ", got " +
                     (t.empty() ? std::string("nothing") : std::string(t)));
  };
  if (s.accept(']')) {
    if (count != 0) throw BadPayload(where + "data has 0 values, expected " + std::to_string(count));
    return;
  }
  const DataType type = spec.datatype;
  for (;;) {
    const char c = s.peek();
    if (c == '[' || c == '{') {
      throw BadPayload(where + "data[" + std::to_string(i) +
                       "]: data must be a flat list of numbers (row-major)");
    }
    std::string_view t;
    if (c == '"') {
      const char* start = s.pos();
      s.skip_value();
      t = std::string_view(start, static_cast<std::size_t>(s.pos() - start));
    } else {
      t = s.read_token();
    }
    if (i >= count) {
      // Count the rest for the message; the payload is wrong anyway.
      std::size_t n = i + 1;
      while (!s.accept(']')) {
        s.expect(',');
        s.skip_value();
        ++n;
      }
      throw BadPayload(where + "data has " + std::to_string(n) + " values, expected " +
                       std::to_string(count) + " (the product of its shape)");
    }
    switch (type) {
      case DataType::kFP32:
      case DataType::kFP16:
      case DataType::kFP64:
        store_float(t, spec, i, dst);
        break;
      case DataType::kINT64: {
        std::int64_t v = 0;
        if (!parse_int(t, v)) bad_value(t, "an integer (INT64)");
        std::memcpy(dst + i * 8, &v, 8);
        break;
      }
      case DataType::kINT32: {
        std::int32_t v = 0;
        if (!parse_int(t, v)) bad_value(t, "an integer in INT32 range");
        std::memcpy(dst + i * 4, &v, 4);
        break;
      }
      case DataType::kINT8: {
        std::int8_t v = 0;
        if (!parse_int(t, v)) bad_value(t, "an integer in INT8 range (-128..127)");
        dst[i] = static_cast<unsigned char>(v);
        break;
      }
      case DataType::kUINT8: {
        std::uint8_t v = 0;
        if (!parse_int(t, v)) bad_value(t, "an integer in UINT8 range (0..255)");
        dst[i] = v;
        break;
      }
      case DataType::kBOOL: {
        if (t == "true" || t == "1") {
          dst[i] = 1;
        } else if (t == "false" || t == "0") {
          dst[i] = 0;
        } else {
          bad_value(t, "true or false (BOOL)");
        }
        break;
      }
    }
    ++i;
    if (s.accept(']')) break;
    s.expect(',');
  }
  if (i != count) {
    throw BadPayload(where + "data has " + std::to_string(i) + " values, expected " + std::to_string(count) +
                     " (the product of its shape)");
  }
}

// The job's shape without a leading batch dimension of 1, checked against
// the declaration; throws BadPayload naming the input.
std::vector<std::int64_t> check_shape(const InputSpec& spec, const std::vector<std::int64_t>& given) {
  std::vector<std::int64_t> shape = given;
  if (shape.size() == spec.shape.size() + 1 && shape.front() == 1) shape.erase(shape.begin());
  bool ok = shape.size() == spec.shape.size();
  for (std::size_t d = 0; ok && d < shape.size(); ++d) {
    ok = spec.shape[d] < 0 ? shape[d] >= 1 : shape[d] == spec.shape[d];
  }
  if (!ok) {
    std::vector<std::int64_t> batched{1};
    batched.insert(batched.end(), spec.shape.begin(), spec.shape.end());
    throw BadPayload("input " + quoted(spec.name) + ": expected shape " + shape_text(spec.shape) + " or " +
                     shape_text(batched) + " (-1: any length from 1), got " + shape_text(given));
  }
  return shape;
}

}  // namespace

std::optional<DataType> parse_datatype(std::string_view name) noexcept {
  for (std::size_t i = 0; i < std::size(kNames); ++i) {
    if (name == kNames[i]) return static_cast<DataType>(i);
  }
  return std::nullopt;
}

const char* datatype_name(DataType type) noexcept { return kNames[static_cast<std::size_t>(type)]; }

std::size_t datatype_size(DataType type) noexcept { return kSizes[static_cast<std::size_t>(type)]; }

namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "binary tensor data is little-endian, as is memory");

// Checks `count` elements of binary data for the input, as parse_data checks
// JSON numbers: floats finite unless allowed, BOOL bytes 0 or 1.
void check_binary_values(const InputSpec& spec, const unsigned char* p, std::size_t count) {
  const auto at = [&](std::size_t i) {
    return "input " + quoted(spec.name) + ": binary data element " + std::to_string(i) + ": ";
  };
  const auto non_finite = [&](std::size_t i, double v) {
    throw BadPayload(at(i) + std::to_string(v) + " is not a finite " + datatype_name(spec.datatype) +
                     " value, and this input does not allow non-finite values (allow_non_finite: false)");
  };
  switch (spec.datatype) {
    case DataType::kFP32:
      if (spec.allow_non_finite) return;
      for (std::size_t i = 0; i < count; ++i) {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        if (!std::isfinite(v)) non_finite(i, v);
      }
      return;
    case DataType::kFP64:
      if (spec.allow_non_finite) return;
      for (std::size_t i = 0; i < count; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        if (!std::isfinite(v)) non_finite(i, v);
      }
      return;
    case DataType::kFP16:
      if (spec.allow_non_finite) return;
      for (std::size_t i = 0; i < count; ++i) {
        std::uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        if ((h & 0x7C00) == 0x7C00) non_finite(i, half_to_float(h));
      }
      return;
    case DataType::kBOOL:
      for (std::size_t i = 0; i < count; ++i) {
        if (p[i] > 1) throw BadPayload(at(i) + "a BOOL byte must be 0 or 1, got " + std::to_string(p[i]));
      }
      return;
    default:
      return;  // every bit pattern of an integer is a value
  }
}

// The byte offset in payload_binary of each raw input with binary data (in
// the JSON's input order, as the binary data extension lays them out), after
// checking that together they are exactly `binary_size` bytes.
std::vector<std::size_t> binary_offsets(const std::vector<RawInput>& raw, std::size_t binary_size) {
  std::vector<std::size_t> offsets(raw.size(), 0);
  std::size_t at = 0;
  std::string names;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (!raw[i].binary_data_size) continue;
    const auto n = static_cast<std::uint64_t>(*raw[i].binary_data_size);
    names += (names.empty() ? "" : ", ") + quoted(raw[i].name);
    if (n > binary_size - at) {
      throw BadPayload("input " + quoted(raw[i].name) + ": binary_data_size " + std::to_string(n) +
                       " at byte " + std::to_string(at) + " runs past the end of the payload_binary (" +
                       std::to_string(binary_size) + " bytes)");
    }
    offsets[i] = at;
    at += static_cast<std::size_t>(n);
  }
  if (at != binary_size) {
    if (names.empty()) {
      throw BadPayload("payload_binary has " + std::to_string(binary_size) +
                       " bytes, but no input has parameters.binary_data_size");
    }
    throw BadPayload("payload_binary has " + std::to_string(binary_size) + " bytes, " +
                     std::to_string(binary_size - at) + " more than the binary_data_size of input(s) " +
                     names + " add up to (" + std::to_string(at) + ")");
  }
  return offsets;
}

}  // namespace

DecodedPayload decode_payload(std::string_view json, const std::vector<InputSpec>& specs,
                              std::string_view binary) {
  DecodedPayload result;
  try {
    Scanner s(json);
    std::vector<RawInput> raw;
    bool has_inputs = false;
    s.expect('{');
    if (!s.accept('}')) {
      for (;;) {
        const std::string key = s.read_string();
        s.expect(':');
        if (key == "inputs") {
          if (s.peek() != '[')
            throw BadPayload("payload: \"inputs\" must be a list of {name, shape, datatype, data}");
          has_inputs = true;
          s.expect('[');
          if (!s.accept(']')) {
            for (;;) {
              if (s.peek() != '{') throw BadPayload("payload: each of \"inputs\" must be an object");
              raw.push_back(read_raw_input(s));
              if (s.accept(']')) break;
              s.expect(',');
            }
          }
        } else {
          s.skip_value();
        }
        if (s.accept('}')) break;
        s.expect(',');
      }
    }
    if (!s.at_end()) s.fail("text after the payload object");

    std::string expected;
    for (const InputSpec& spec : specs) expected += (expected.empty() ? "" : ", ") + quoted(spec.name);
    if (!has_inputs) throw BadPayload("payload has no \"inputs\" list (expected inputs " + expected + ")");

    const std::vector<std::size_t> offsets = binary_offsets(raw, binary.size());
    std::vector<const RawInput*> by_spec(specs.size(), nullptr);
    for (const RawInput& in : raw) {
      std::size_t k = 0;
      while (k < specs.size() && specs[k].name != in.name) ++k;
      if (k == specs.size()) {
        throw BadPayload("unknown input " + quoted(in.name) + " (this model takes " + expected + ")");
      }
      if (by_spec[k] != nullptr) throw BadPayload("input " + quoted(in.name) + " is given twice");
      by_spec[k] = &in;
    }
    result.tensors.resize(specs.size());
    for (std::size_t k = 0; k < specs.size(); ++k) {
      const InputSpec& spec = specs[k];
      const RawInput* in = by_spec[k];
      const std::string declared = std::string(datatype_name(spec.datatype)) + " " + shape_text(spec.shape);
      if (in == nullptr)
        throw BadPayload("input " + quoted(spec.name) + " is missing (expected " + declared + ")");
      if (in->datatype.empty()) {
        throw BadPayload("input " + quoted(spec.name) + ": missing datatype (expected " +
                         datatype_name(spec.datatype) + ")");
      }
      if (in->datatype != datatype_name(spec.datatype)) {
        throw BadPayload("input " + quoted(spec.name) + ": expected datatype " +
                         datatype_name(spec.datatype) + ", got " + quoted(in->datatype));
      }
      if (!in->has_shape)
        throw BadPayload("input " + quoted(spec.name) + ": missing shape (expected " + declared + ")");
      if (in->data_begin == nullptr && !in->binary_data_size)
        throw BadPayload("input " + quoted(spec.name) + ": missing data (or parameters.binary_data_size)");
      if (in->data_begin != nullptr && in->binary_data_size) {
        throw BadPayload("input " + quoted(spec.name) +
                         ": has both data and parameters.binary_data_size; give one of them");
      }
      DecodedTensor& tensor = result.tensors[k];
      tensor.shape = check_shape(spec, in->shape);
      std::size_t count = 1;
      for (const std::int64_t d : tensor.shape) count *= static_cast<std::size_t>(d);
      const std::size_t bytes = count * datatype_size(spec.datatype);
      if (in->binary_data_size) {
        if (static_cast<std::uint64_t>(*in->binary_data_size) != bytes) {
          throw BadPayload("input " + quoted(spec.name) + ": binary_data_size is " +
                           std::to_string(*in->binary_data_size) + " bytes, expected " +
                           std::to_string(bytes) + " (shape " + shape_text(in->shape) + " of " +
                           datatype_name(spec.datatype) + ", " +
                           std::to_string(datatype_size(spec.datatype)) + " byte(s) each)");
        }
        const auto* src = reinterpret_cast<const unsigned char*>(binary.data()) +
                          offsets[static_cast<std::size_t>(in - raw.data())];
        check_binary_values(spec, src, count);
        tensor.bytes.assign(src, src + bytes);
        continue;
      }
      tensor.bytes.resize(bytes);
      s.seek(in->data_begin);
      parse_data(s, spec, count, tensor.bytes.data());
    }
  } catch (const BadPayload& e) {
    result.tensors.clear();
    result.error = e.what();
  }
  return result;
}

namespace {

template <typename T>
void append_number(std::string& out, T v) {
  char buf[32];
  if constexpr (std::is_floating_point_v<T>) {
    // The strings the payload reader accepts: null would lose which it was,
    // and a bare NaN token is not JSON (jsonb refuses it).
    if (std::isnan(v)) {
      out += "\"NaN\"";
      return;
    }
    if (std::isinf(v)) {
      out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
      return;
    }
  }
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, static_cast<std::size_t>(ptr - buf));
}

template <typename T>
void append_data(std::string& out, const void* data, std::size_t count) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < count; ++i) {
    if (i) out += ',';
    T v;
    std::memcpy(&v, p + i * sizeof(T), sizeof(T));
    append_number(out, v);
  }
}

}  // namespace

void encode_result(std::string& out, std::string_view model_name, const std::vector<OutputView>& outputs,
                   std::string* binary) {
  std::size_t total = 64;
  for (const OutputView& o : outputs) {
    std::size_t count = 1;
    for (const std::int64_t d : o.shape) count *= static_cast<std::size_t>(d);
    total += 64 + count * 12;
  }
  out.reserve(out.size() + total);
  out += "{\"model_name\":";
  util::append_json_string(out, model_name);
  out += ",\"outputs\":[";
  for (std::size_t k = 0; k < outputs.size(); ++k) {
    const OutputView& o = outputs[k];
    if (k) out += ',';
    out += "{\"name\":";
    util::append_json_string(out, o.name);
    out += ",\"shape\":[";
    std::size_t count = 1;
    for (std::size_t d = 0; d < o.shape.size(); ++d) {
      if (d) out += ',';
      append_number(out, o.shape[d]);
      count *= static_cast<std::size_t>(o.shape[d]);
    }
    out += "],\"datatype\":\"";
    out += datatype_name(o.datatype);
    if (binary != nullptr) {
      const std::size_t bytes = count * datatype_size(o.datatype);
      out += "\",\"parameters\":{\"binary_data_size\":";
      append_number(out, bytes);
      out += "}}";
      binary->append(static_cast<const char*>(o.data), bytes);
      continue;
    }
    out += "\",\"data\":[";
    switch (o.datatype) {
      case DataType::kFP32:
        append_data<float>(out, o.data, count);
        break;
      case DataType::kFP64:
        append_data<double>(out, o.data, count);
        break;
      case DataType::kINT64:
        append_data<std::int64_t>(out, o.data, count);
        break;
      case DataType::kINT32:
        append_data<std::int32_t>(out, o.data, count);
        break;
      case DataType::kINT8:
        append_data<std::int8_t>(out, o.data, count);
        break;
      case DataType::kUINT8:
        append_data<std::uint8_t>(out, o.data, count);
        break;
      case DataType::kFP16: {
        const auto* p = static_cast<const unsigned char*>(o.data);
        for (std::size_t i = 0; i < count; ++i) {
          if (i) out += ',';
          std::uint16_t h;
          std::memcpy(&h, p + i * 2, 2);
          append_number(out, half_to_float(h));
        }
        break;
      }
      case DataType::kBOOL: {
        const auto* p = static_cast<const unsigned char*>(o.data);
        for (std::size_t i = 0; i < count; ++i) {
          if (i) out += ',';
          out += p[i] ? "true" : "false";
        }
        break;
      }
    }
    out += "]}";
  }
  out += "]}";
}

float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  std::uint32_t exp = (h >> 10) & 0x1F;
  std::uint32_t mant = h & 0x3FF;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {
      // Subnormal: normalise.
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FF;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint16_t float_to_half(float f) noexcept {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000);
  const std::uint32_t abs = x & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7C00 | (abs > 0x7F800000u ? 0x200 : 0));
  if (abs >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00);  // rounds past 65504
  if (abs < 0x33000001u) return sign;  // below half the smallest subnormal
  const int exp = static_cast<int>(abs >> 23);
  std::uint32_t mant = (abs & 0x7FFFFF) | 0x800000;
  if (exp < 113) {
    // Subnormal half: shift with round to nearest even.
    const int shift = 126 - exp;
    const std::uint32_t rest = mant & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    std::uint32_t m = mant >> shift;
    if (rest > half || (rest == half && (m & 1))) ++m;
    return static_cast<std::uint16_t>(sign | m);
  }
  std::uint32_t m = mant >> 13;
  const std::uint32_t rest = mant & 0x1FFF;
  std::uint32_t e = static_cast<std::uint32_t>(exp - 112);
  if (rest > 0x1000 || (rest == 0x1000 && (m & 1))) {
    ++m;
    if (m == 0x800) {
      m = 0x400;
      ++e;
    }
  }
  return static_cast<std::uint16_t>(sign | (e << 10) | (m & 0x3FF));
}

}  // namespace inferq::executor
