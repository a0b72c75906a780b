// Models made the way users make them: exported from Python by
// tests/python/export_models.py (torchvision resnet18 traced, a transformer
// text encoder scripted, scripted models returning a tuple and a dict; fixed
// seeds, random weights), served end to end from SQL by the real binaries.
// Each result must equal Python's own forward of the same input, run alone
// and unpadded (the file's expected values); the largest error is reported.
// A trace that kept its batch size, and inputs declared with a dtype the
// model was not traced with, stop `inferq run` with a message that says what
// to change.
#include <doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using nlohmann::json;

// The exported models, made once per test binary by the real Python.
const TempDir& models() {
  static TempDir dir("inferq-pymodels");
  static const bool made = [] {
    run_to_success({"/usr/bin/python3", source_path("tests/python/export_models.py"), dir.path()}, 240s,
                   "export_models.py");
    return true;
  }();
  (void)made;
  return dir;
}

// What the model generator wrote: missing is a broken set-up, not an empty file.
std::string model_file(const std::string& path) {
  std::string text = read_file(path);
  if (text.empty()) throw std::runtime_error("cannot read " + path);
  return text;
}

TestQueue python_queue(const std::string& name, int max_jobs) {
  TestQueue q;
  q.name = name;
  q.model = models().file(name + ".pt");
  q.max_jobs = max_jobs;
  q.max_attempts = 1;
  q.deadline = "120s";
  q.extra_yaml = "device: cpu\nthreads: 1\n" + model_file(models().file(name + ".queue.yaml"));
  return q;
}

struct Served {
  std::string model;
  std::vector<std::int64_t> ids;
  json cases;
};

// Compares one job's result with Python's; returns the largest absolute
// error relative to the output's largest magnitude (at least 1).
double compare(const JobRow& row, const std::string& model, const json& expected) {
  CAPTURE(row.id);
  CAPTURE(row.errors);
  REQUIRE(row.state == "succeeded");
  REQUIRE(row.result);
  const json r = json::parse(*row.result);
  CHECK(r.at("model_name") == model);
  REQUIRE(r.at("outputs").size() == expected.size());
  double worst = 0;
  for (const json& o : r.at("outputs")) {
    const std::string name = o.at("name");
    CAPTURE(name);
    REQUIRE(expected.contains(name));
    const json& want = expected.at(name);
    CHECK(o.at("shape") == want.at("shape"));
    const auto got = o.at("data").get<std::vector<double>>();
    const auto ref = want.at("data").get<std::vector<double>>();
    REQUIRE(got.size() == ref.size());
    double scale = 1;
    for (const double v : ref) scale = std::max(scale, std::abs(v));
    for (std::size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - ref[i]) / scale);
  }
  return worst;
}

}  // namespace

TEST_CASE("Python-exported models are served from SQL and equal Python's own forward") {
  const std::string url = fresh_inferq_database();
  std::vector<TestQueue> queues{python_queue("resnet18", 4), python_queue("text", 8), python_queue("pair", 8),
                                python_queue("heads", 8)};
  // The result datatypes follow the model's tensors (FP64 and INT64 included).
  const std::map<std::string, std::map<std::string, std::string>> datatypes{
      {"resnet18", {{"logits", "FP32"}}},
      {"text", {{"embedding", "FP32"}}},
      {"pair", {{"h", "FP32"}, {"norm", "FP64"}}},
      {"heads", {{"probs", "FP32"}, {"label", "INT64"}}}};
  // Enqueued before the daemon starts, so each queue's jobs run as one
  // padded batch (the text model's lengths differ).
  std::vector<Served> served;
  for (const TestQueue& q : queues) {
    Served s{q.name, {}, json::parse(model_file(models().file(q.name + ".cases.json")))};
    REQUIRE(!s.cases.empty());
    std::vector<std::string> payloads;
    for (const json& c : s.cases) payloads.push_back(c.at("payload").dump());
    s.ids = enqueue_many(url, q.name, payloads);
    served.push_back(std::move(s));
  }

  Daemon d(daemon_config(url, queues), "pymodels");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(120s));
  REQUIRE(wait_all_final(url, 180s));

  for (const Served& s : served) {
    CAPTURE(s.model);
    double worst = 0;
    for (std::size_t i = 0; i < s.ids.size(); ++i) {
      const auto row = job(url, s.ids[i]);
      REQUIRE(row);
      worst = std::max(worst, compare(*row, s.model, s.cases.at(i).at("expected")));
      for (const json& o : json::parse(*row->result).at("outputs"))
        CHECK(o.at("datatype") == datatypes.at(s.model).at(o.at("name").get<std::string>()));
    }
    MESSAGE(s.model << ": " << s.ids.size() << " jobs, max error relative to the largest output " << worst);
    CHECK(worst < 1e-4);
  }
  // Every job succeeded at its first attempt: nothing was retried.
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE attempts <> 1") == 0);
}

TEST_CASE("a traced model that kept its batch size, or inputs of another dtype, stop inferq run saying why") {
  const std::string url = fresh_inferq_database();
  SUBCASE("traced at batch 1, max_jobs 4") {
    Daemon d(daemon_config(url, {python_queue("baked_batch", 4)}), "baked");
    INFO("daemon log:\n", d.log());
    const auto status = d.process().wait_exit(60s);
    REQUIRE(status);
    CHECK(exited_with(*status, 1));
    CHECK(d.log().find("queue \"baked_batch\": batch: the model runs at batch 1 but fails at batch 4 "
                       "(batch.max_jobs)") != std::string::npos);
    CHECK(d.log().find("or set batch.max_jobs: 1") != std::string::npos);
  }
  SUBCASE("the same model with max_jobs 1 serves its jobs") {
    const auto id = enqueue(
        url, "baked_batch",
        R"({"inputs": [{"name": "x", "datatype": "FP32", "shape": [8], "data": [1,2,3,4,5,6,7,8]}]})");
    Daemon d(daemon_config(url, {python_queue("baked_batch", 1)}), "baked1");
    INFO("daemon log:\n", d.log());
    REQUIRE(d.wait_ready(60s));
    REQUIRE(wait_all_final(url, 60s));
    const auto row = job(url, id);
    REQUIRE(row);
    CHECK(row->state == "succeeded");
  }
  SUBCASE("an FP32 model declared FP64") {
    TestQueue q = python_queue("pair", 4);
    q.extra_yaml =
        "device: cpu\nthreads: 1\n"
        "inputs: [{name: x, datatype: FP64, shape: [8]}, {name: scale, datatype: FP32, shape: [1]}]\n"
        "outputs: [{name: h}, {name: norm}]\n";
    Daemon d(daemon_config(url, {q}), "dtype");
    INFO("daemon log:\n", d.log());
    const auto status = d.process().wait_exit(60s);
    REQUIRE(status);
    CHECK(exited_with(*status, 1));
    CHECK(d.log().find("queue \"pair\": model: warm-up at batch 1 failed: ") != std::string::npos);
    CHECK(d.log().find("check that inputs: declares the datatype") != std::string::npos);
  }
}
