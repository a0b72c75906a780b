#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// Open Inference Protocol (KServe v2) JSON tensors, without torch and without
// a JSON DOM: a small scanner reads a job's payload straight into one
// contiguous buffer per input, and results are written straight from tensor
// memory into JSON text.
namespace inferq::executor {

enum class DataType : std::uint8_t { kFP32, kFP16, kFP64, kINT64, kINT32, kINT8, kUINT8, kBOOL };

// "FP32" -> kFP32 etc.; nullopt for a name that is not one of the eight.
std::optional<DataType> parse_datatype(std::string_view name) noexcept;
const char* datatype_name(DataType type) noexcept;
// Bytes per element (BOOL is one byte holding 0 or 1; FP16 is IEEE binary16).
std::size_t datatype_size(DataType type) noexcept;

// What a model input must look like. `shape` excludes the batch dimension;
// -1 marks a variable-length dimension.
struct InputSpec {
  std::string name;
  DataType datatype = DataType::kFP32;
  std::vector<std::int64_t> shape;
  double pad = 0;
  bool allow_non_finite = false;
};

// One input of one job, decoded: `shape` without the batch dimension and the
// elements in row-major order, datatype_size() bytes each.
struct DecodedTensor {
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;
};

// A payload decoded against its specs: on success `tensors` has one entry per
// spec, in spec order; otherwise `error` says what is wrong, naming the input
// and what was expected (a permanent error: the same payload always fails).
struct DecodedPayload {
  std::vector<DecodedTensor> tensors;
  std::string error;
  bool ok() const noexcept { return error.empty(); }
};

// Decodes `{"inputs": [{"name", "shape", "datatype", "data"}, ...]}` (keys in
// any order; other keys ignored). A shape may carry a leading batch dimension
// of 1. An input may give `"parameters": {"binary_data_size": N}` instead of
// "data" (the Open Inference Protocol's binary data extension): its data is
// N raw little-endian bytes of `binary`, which holds the binary inputs' data
// back to back in the order the inputs appear in the JSON and nothing else.
// Never throws for bad input (only std::bad_alloc).
DecodedPayload decode_payload(std::string_view json, const std::vector<InputSpec>& specs,
                              std::string_view binary = {});

// One output tensor of one job, as it sits in memory (row-major, contiguous).
struct OutputView {
  std::string_view name;
  DataType datatype = DataType::kFP32;
  std::vector<std::int64_t> shape;  // without the batch dimension
  const void* data = nullptr;
};

// Appends `{"model_name": ..., "outputs": [{"name", "shape", "datatype",
// "data"}, ...]}` to `out`. Floats are written in their shortest round-trip
// form; a non-finite float (which JSON cannot hold) is written as the string
// "NaN", "Infinity" or "-Infinity". With `binary`, each output gives
// `"parameters": {"binary_data_size": N}` instead of "data" and its N raw
// bytes are appended to `*binary`, in output order.
void encode_result(std::string& out, std::string_view model_name, const std::vector<OutputView>& outputs,
                   std::string* binary = nullptr);

// IEEE binary16 <-> binary32 (round to nearest even), for FP16 data.
float half_to_float(std::uint16_t h) noexcept;
std::uint16_t float_to_half(float f) noexcept;

}  // namespace inferq::executor
