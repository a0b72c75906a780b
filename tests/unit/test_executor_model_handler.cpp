// The model handler in-process, on the example models written into a temp
// dir: batching and padding equal one-by-one runs and the raw forward pass,
// bad payloads fail alone, and every start-up check names queue and key.
#include <doctest.h>
#include <torch/script.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "config/settings.hpp"
#include "executor/model_handler.hpp"
#include "support/models/example_models.hpp"
#include "support/test_env.hpp"

using inferq::config::ModelInput;
using inferq::config::ModelOutput;
using inferq::config::QueueSettings;
using inferq::executor::make_example_models;
using inferq::executor::make_model_handler;
using inferq::executor::StartupError;
using inferq::protocol::Outcome;
using inferq::protocol::RunUnit;
using inferq::test::reference_forward;
using inferq::test::TempDir;
using inferq::test::token_ids;
using nlohmann::json;

namespace {

// Made once: building and saving the encoder takes a moment.
const TempDir& models() {
  static TempDir dir("inferq-models");
  static const bool made = (make_example_models(dir.path()), true);
  (void)made;
  return dir;
}

QueueSettings encoder_queue() {
  QueueSettings q;
  q.name = "encoder";
  q.model = models().file("encoder.pt");
  q.device = "cpu";
  q.batch.max_jobs = 8;
  q.inputs = {ModelInput{"input_ids", "INT64", {-1}, 0, false}};
  q.outputs = {ModelOutput{"embedding"}};
  return q;
}

QueueSettings mlp_queue() {
  QueueSettings q;
  q.name = "mlp";
  q.model = models().file("mlp.pt");
  q.device = "cpu";
  q.batch.max_jobs = 4;
  q.inputs = {ModelInput{"x", "FP32", {384}, 0, false}};
  q.outputs = {ModelOutput{"y"}};
  return q;
}

std::string ids_payload(const std::vector<std::int64_t>& ids) {
  return json{
      {"inputs", {{{"name", "input_ids"}, {"datatype", "INT64"}, {"shape", {ids.size()}}, {"data", ids}}}}}
      .dump();
}

std::vector<float> floats_of(const std::string& result, const std::string& output) {
  const json r = json::parse(result);
  for (const auto& o : r.at("outputs")) {
    if (o.at("name") == output) return o.at("data").get<std::vector<float>>();
  }
  FAIL("no output " << output << " in " << result);
  return {};
}

void check_close(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i);
    CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-4));
  }
}

std::string error_of(const QueueSettings& q) {
  try {
    make_model_handler(q);
  } catch (const StartupError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("variable-length inputs in one unit equal one-by-one runs and the raw forward pass") {
  auto handler = make_model_handler(encoder_queue());
  const std::vector<std::size_t> lengths{3, 12, 7, 1};
  RunUnit unit;
  unit.unit_id = 9;
  for (std::size_t j = 0; j < lengths.size(); ++j) {
    unit.jobs.push_back({static_cast<std::int64_t>(100 + j), ids_payload(token_ids(lengths[j], j))});
  }
  const auto batched = handler->run_unit(unit);
  REQUIRE(batched.jobs.size() == lengths.size());
  for (std::size_t j = 0; j < lengths.size(); ++j) {
    CAPTURE(j);
    REQUIRE(batched.jobs[j].outcome == Outcome::kSucceeded);
    CHECK(batched.jobs[j].job_id == static_cast<std::int64_t>(100 + j));
    const json r = json::parse(batched.jobs[j].body);
    CHECK(r.at("model_name") == "encoder");
    CHECK(r.at("outputs").at(0).at("shape") == json::array({384}));
    CHECK(r.at("outputs").at(0).at("datatype") == "FP32");
    const auto alone = handler->run_job(unit.jobs[j]);
    REQUIRE(alone.outcome == Outcome::kSucceeded);
    const auto got = floats_of(batched.jobs[j].body, "embedding");
    check_close(got, floats_of(alone.body, "embedding"));
    check_close(got, reference_forward(models().file("encoder.pt"), at::tensor(token_ids(lengths[j], j))));
  }
}

TEST_CASE("a bad payload fails alone and permanently; the jobs beside it succeed") {
  auto handler = make_model_handler(mlp_queue());
  std::vector<float> x(384);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 17) / 17.0f - 0.5f;
  const std::string good =
      json{{"inputs", {{{"name", "x"}, {"datatype", "FP32"}, {"shape", {1, 384}}, {"data", x}}}}}.dump();
  RunUnit unit;
  unit.jobs = {{1, good},
               {2, R"({"inputs": [{"name": "x", "datatype": "FP64", "shape": [384], "data": []}]})"},
               {3, good}};
  const auto result = handler->run_unit(unit);
  REQUIRE(result.jobs.size() == 3);
  CHECK(result.jobs[1].outcome == Outcome::kPermanent);
  CHECK(result.jobs[1].body == "input \"x\": expected datatype FP32, got \"FP64\"");
  REQUIRE(result.jobs[0].outcome == Outcome::kSucceeded);
  REQUIRE(result.jobs[2].outcome == Outcome::kSucceeded);
  const auto want = reference_forward(models().file("mlp.pt"), at::tensor(x));
  check_close(floats_of(result.jobs[0].body, "y"), want);
  check_close(floats_of(result.jobs[2].body, "y"), want);
}

TEST_CASE("start-up checks name the queue and the key") {
  QueueSettings q = mlp_queue();
  q.model = models().file("missing.pt");
  CHECK(error_of(q) == "queue \"mlp\": model: no such file: " + q.model);

  q = mlp_queue();
  q.model = models().file("mlp.queue.yaml");  // a file, not TorchScript
  CHECK(error_of(q).rfind("queue \"mlp\": model: cannot load " + q.model + " as TorchScript: ", 0) == 0);

  q = mlp_queue();
  q.inputs.push_back(ModelInput{"z", "FP32", {4}, 0, false});
  CHECK(error_of(q) == "queue \"mlp\": inputs: declares 2 input(s) (x, z) but the model's forward() takes 1");

  q = mlp_queue();
  q.device = "cuda:0";
  CHECK(error_of(q) ==
        "queue \"mlp\": device: cuda:0 needs CUDA, but this libtorch has no CUDA support or sees no GPU (use "
        "cpu "
        "or auto)");

  q = mlp_queue();
  q.outputs.push_back(ModelOutput{"extra"});
  CHECK(error_of(q) ==
        "queue \"mlp\": outputs: the model returns a single tensor of 1 but outputs declares 2");

  q = mlp_queue();
  q.extra_libraries = {models().file("nope.so")};
  CHECK(error_of(q).rfind("queue \"mlp\": extra_libraries[0]: cannot load " + models().file("nope.so"), 0) ==
        0);
}
