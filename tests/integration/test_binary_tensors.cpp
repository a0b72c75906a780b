// Binary tensors end to end (issue 21 item 4): a producer sends an input's
// data as raw little-endian bytes in inferq.enqueue's payload_binary (the
// Open Inference Protocol's binary data extension), a queue with
// binary_data_output returns its outputs' bytes in result_binary, and the
// SQL helpers read them back. Results must equal the raw forward pass run
// here; a bad binary_data_size, a short or long bytea and a wrong datatype
// fail their job alone, with a message naming the input.
#include <doctest.h>
#include <torch/script.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "support/daemon.hpp"
#include "support/models/example_models.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using nlohmann::json;

TestQueue mlp_queue(const std::string& name, bool binary_outputs) {
  TestQueue q;
  q.name = name;
  q.model = example_models().file("mlp.pt");
  q.max_jobs = 8;
  q.max_attempts = 3;
  q.extra_yaml = std::string("device: cpu\nthreads: 1\n") +
                 "inputs: [{name: x, datatype: FP32, shape: [384]}]\noutputs: [{name: y}]\n" +
                 (binary_outputs ? "binary_data_output: true\n" : "");
  return q;
}

TestQueue encoder_queue() {
  TestQueue q;
  q.name = "encoder";
  q.model = example_models().file("encoder.pt");
  q.max_jobs = 8;
  q.max_attempts = 3;
  q.extra_yaml =
      "threads: 1\n"
      "inputs: [{name: input_ids, datatype: INT64, shape: [-1], pad: 0}]\n"
      "outputs: [{name: embedding}]\n";
  return q;
}

template <typename T>
std::string bytes_of(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "\\x";
  for (const char c : bytes) {
    out += kDigits[static_cast<unsigned char>(c) >> 4];
    out += kDigits[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

// An input entry whose data is `size` bytes of payload_binary.
json binary_input(const std::string& name, const std::string& datatype, const json& shape, std::size_t size) {
  return {
      {"name", name}, {"datatype", datatype}, {"shape", shape}, {"parameters", {{"binary_data_size", size}}}};
}

std::string payload(const json& input) { return json{{"inputs", {input}}}.dump(); }

std::int64_t enqueue_binary(const std::string& url, const std::string& queue, const std::string& payload_json,
                            const std::string& binary) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  return tx
      .exec_params1("SELECT inferq.enqueue($1, $2::jsonb, payload_binary => $3::bytea)", queue, payload_json,
                    hex(binary))[0]
      .as<std::int64_t>();
}

void check_close(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  int bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(got[i] == doctest::Approx(want[i]).epsilon(1e-4)) && bad++ < 3) {
      CHECK_MESSAGE(false, "element " << i << ": " << got[i] << " != " << want[i]);
    }
  }
  CHECK(bad == 0);
}

// A JSON output's data.
std::vector<float> json_output(const JobRow& row, const std::string& output) {
  CAPTURE(row.id);
  CAPTURE(row.errors);
  REQUIRE(row.state == "succeeded");
  REQUIRE(row.result);
  const json r = json::parse(*row.result);
  const json& o = r.at("outputs").at(0);
  CHECK(o.at("name") == output);
  return o.at("data").get<std::vector<float>>();
}

struct BinaryOutput {
  json entry;                 // its entry in result->'outputs'
  std::vector<float> bytes;   // result_binary, read as FP32
  std::vector<float> helper;  // inferq.output_real(result, result_binary, output)
};

BinaryOutput binary_output(const std::string& url, std::int64_t id, const std::string& output) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const auto row = tx.exec_params1(
      "SELECT state::text, result::text, result_binary, last_error FROM inferq.jobs WHERE id = $1", id);
  CAPTURE(id);
  CAPTURE(row[3].c_str());
  REQUIRE(std::string(row[0].c_str()) == "succeeded");
  BinaryOutput out;
  out.entry = json::parse(row[1].c_str()).at("outputs").at(0);
  const pqxx::binarystring b(row[2]);
  out.bytes.resize(b.size() / 4);
  std::memcpy(out.bytes.data(), b.data(), out.bytes.size() * 4);
  CHECK(b.size() == out.bytes.size() * 4);
  for (const auto& r : tx.exec_params(
           "SELECT v FROM inferq.jobs j, unnest(inferq.output_real(j.result, j.result_binary, $2)) v "
           "WHERE j.id = $1",
           id, output)) {
    out.helper.push_back(r[0].as<float>());
  }
  return out;
}

}  // namespace

TEST_CASE("binary payloads and outputs from SQL: results equal the raw forward; bad binary data dies alone") {
  const std::string url = fresh_inferq_database();
  const std::string mlp = example_models().file("mlp.pt");
  // Enqueued before the daemon starts, so units mix good and bad jobs.
  std::vector<std::int64_t> json_out;    // binary inputs, JSON outputs
  std::vector<std::int64_t> binary_out;  // binary inputs, binary outputs
  std::vector<std::int64_t> json_in;     // JSON inputs, binary outputs
  std::vector<std::int64_t> encoder;     // binary INT64 inputs of varying length, padded
  std::vector<std::size_t> lengths;
  struct Bad {
    std::int64_t id;
    std::string message;
  };
  std::vector<Bad> bad;
  const json x384 = binary_input("x", "FP32", {384}, 1536);
  for (int j = 0; j < 6; ++j) {
    const std::string x = bytes_of(mlp_features(j));
    json_out.push_back(enqueue_binary(url, "mlp", payload(binary_input("x", "FP32", {1, 384}, 1536)), x));
    binary_out.push_back(enqueue_binary(url, "mlpb", payload(x384), x));
    json_in.push_back(
        enqueue(url, "mlpb",
                payload({{"name", "x"}, {"datatype", "FP32"}, {"shape", {384}}, {"data", mlp_features(j)}})));
    const std::size_t n = 1 + static_cast<std::size_t>(j * 7) % 40;
    lengths.push_back(n);
    encoder.push_back(enqueue_binary(url, "encoder", payload(binary_input("input_ids", "INT64", {n}, n * 8)),
                                     bytes_of(token_ids(n, j))));
    const std::string x1 = bytes_of(mlp_features(1));
    if (j == 1) {
      bad.push_back(
          {enqueue_binary(url, "mlp", payload(binary_input("x", "FP32", {384}, 1532)), x1.substr(0, 1532)),
           "input \"x\": binary_data_size is 1532 bytes, expected 1536 (shape [384] of FP32, 4 byte(s) "
           "each)"});
    }
    if (j == 2) {
      bad.push_back({enqueue_binary(url, "mlpb", payload(x384), x1.substr(0, 1535)),
                     "input \"x\": binary_data_size 1536 at byte 0 runs past the end of the payload_binary "
                     "(1535 bytes)"});
    }
    if (j == 3) {
      bad.push_back(
          {enqueue_binary(url, "mlp", payload(x384), x1 + '\0'),
           "payload_binary has 1537 bytes, 1 more than the binary_data_size of input(s) \"x\" add up "
           "to (1536)"});
    }
    if (j == 4) {
      bad.push_back({enqueue_binary(url, "mlpb", payload(binary_input("x", "FP64", {384}, 3072)), x1 + x1),
                     "input \"x\": expected datatype FP32, got \"FP64\""});
    }
  }

  Daemon d(daemon_config(url, {mlp_queue("mlp", false), mlp_queue("mlpb", true), encoder_queue()}), "binary");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(60s));
  REQUIRE(wait_all_final(url, 60s));

  for (std::size_t j = 0; j < json_out.size(); ++j) {
    const std::vector<float> want = reference_forward(mlp, at::tensor(mlp_features(static_cast<int>(j))));
    const auto row = job(url, json_out[j]);
    REQUIRE(row);
    check_close(json_output(*row, "y"), want);
    CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE result_binary IS NOT NULL AND id = " +
                          std::to_string(json_out[j])) == 0);
    for (const std::int64_t id : {binary_out[j], json_in[j]}) {
      const BinaryOutput b = binary_output(url, id, "y");
      const json want_entry = {{"name", "y"},
                               {"shape", {384}},
                               {"datatype", "FP32"},
                               {"parameters", {{"binary_data_size", 1536}}}};
      CHECK(b.entry == want_entry);
      check_close(b.bytes, want);
      CHECK(b.helper == b.bytes);  // the SQL helper reads exactly the bytes
    }
  }
  for (std::size_t j = 0; j < encoder.size(); ++j) {
    const auto row = job(url, encoder[j]);
    REQUIRE(row);
    CAPTURE(lengths[j]);
    check_close(json_output(*row, "embedding"),
                reference_forward(example_models().file("encoder.pt"),
                                  at::tensor(token_ids(lengths[j], static_cast<int>(j)))));
  }
  for (const Bad& b : bad) {
    const auto row = job(url, b.id);
    REQUIRE(row);
    CAPTURE(row->errors);
    CHECK(row->state == "dead");
    CHECK(row->attempts == 1);
    CHECK(row->last_error.value_or("") == b.message);
  }
}
