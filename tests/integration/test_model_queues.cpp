// Model queues end to end: `inferq-executor make-models` writes the example
// models into a temp dir, a real `inferq run` serves them, jobs go in and come
// out through SQL. Results must equal the raw forward pass run here, one job
// at a time and unpadded; bad payloads end dead after one attempt while the
// jobs in their units succeed; idle executors exit and come back on demand;
// a queue that cannot start stops `inferq run`.
#include <doctest.h>
#include <torch/script.h>
#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/daemon.hpp"
#include "support/http_get.hpp"
#include "support/models/example_models.hpp"
#include "util/scope_guard.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using nlohmann::json;

TestQueue mlp_queue(int max_jobs = 8) {
  TestQueue q;
  q.name = "mlp";
  q.model = example_models().file("mlp.pt");
  q.max_jobs = max_jobs;
  q.max_attempts = 3;
  q.extra_yaml =
      "device: cpu\n"
      "threads: 1\n"
      "inputs: [{name: x, datatype: FP32, shape: [384]}]\n"
      "outputs: [{name: y}]\n";
  return q;
}

TestQueue encoder_queue(int max_jobs = 8) {
  TestQueue q;
  q.name = "encoder";
  q.model = example_models().file("encoder.pt");
  q.max_jobs = max_jobs;
  q.max_attempts = 3;
  q.extra_yaml =
      "threads: 1\n"
      "inputs: [{name: input_ids, datatype: INT64, shape: [-1], pad: 0}]\n"
      "outputs: [{name: embedding}]\n";
  return q;
}

json x_input(const json& data, const json& shape = {384}, const std::string& datatype = "FP32") {
  return {{"name", "x"}, {"datatype", datatype}, {"shape", shape}, {"data", data}};
}

std::string payload(const std::vector<json>& inputs) { return json{{"inputs", inputs}}.dump(); }

void check_result(const JobRow& row, const std::string& model, const std::string& output,
                  const std::vector<float>& want) {
  CAPTURE(row.id);
  CAPTURE(row.errors);
  REQUIRE(row.state == "succeeded");
  REQUIRE(row.result);
  const json r = json::parse(*row.result);
  CHECK(r.at("model_name") == model);
  REQUIRE(r.at("outputs").size() == 1);
  const json& o = r.at("outputs").at(0);
  CHECK(o.at("name") == output);
  CHECK(o.at("datatype") == "FP32");
  CHECK(o.at("shape") == json::array({384}));
  const auto got = o.at("data").get<std::vector<float>>();
  REQUIRE(got.size() == want.size());
  int bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!(got[i] == doctest::Approx(want[i]).epsilon(1e-4)) && bad++ < 3) {
      CHECK_MESSAGE(false, "element " << i << ": " << got[i] << " != " << want[i]);
    }
  }
  CHECK(bad == 0);
}

std::string environ_of(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/environ");
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE(
    "the example models are served from SQL: results equal the raw forward pass; bad payloads die alone") {
  const std::string url = fresh_inferq_database();
  // Enqueued before the daemon starts, so full units mix good and bad jobs
  // and encoder units mix sequence lengths.
  std::vector<std::int64_t> mlp_ids;
  std::vector<std::int64_t> encoder_ids;
  std::vector<std::size_t> lengths;
  struct Bad {
    std::int64_t id;
    std::string message;
  };
  std::vector<Bad> bad;
  const auto add_bad = [&](const std::string& p, const std::string& message) {
    bad.push_back({enqueue(url, "mlp", p), message});
  };
  for (int j = 0; j < 12; ++j) {
    json data = mlp_features(j);
    mlp_ids.push_back(enqueue(url, "mlp", payload({x_input(data, j % 2 ? json{384} : json{1, 384})})));
    const std::size_t n = 1 + static_cast<std::size_t>(j * 7) % 40;
    lengths.push_back(n);
    encoder_ids.push_back(enqueue(
        url, "encoder",
        payload(
            {{{"name", "input_ids"}, {"datatype", "INT64"}, {"shape", {n}}, {"data", token_ids(n, j)}}})));
    if (j == 2) add_bad(payload({}), "input \"x\" is missing (expected FP32 [384])");
    if (j == 3) {
      add_bad(payload({x_input(mlp_features(0)),
                       {{"name", "z"}, {"datatype", "FP32"}, {"shape", {1}}, {"data", {1}}}}),
              "unknown input \"z\" (this model takes \"x\")");
    }
    if (j == 4) {
      add_bad(payload({x_input(std::vector<int>(384, 1), {384}, "INT64")}),
              "input \"x\": expected datatype FP32, got \"INT64\"");
    }
    if (j == 5) {
      add_bad(payload({x_input(std::vector<float>(383, 0.5f), {383})}),
              "input \"x\": expected shape [384] or [1, 384] (-1: any length from 1), got [383]");
    }
    if (j == 6) {
      add_bad(payload({x_input(std::vector<float>(383, 0.5f))}),
              "input \"x\": data has 383 values, expected 384 (the product of its shape)");
    }
    if (j == 7) {
      json data = mlp_features(1);
      data[5] = "abc";
      add_bad(payload({x_input(data)}), "input \"x\": data[5]: expected a number (FP32), got \"abc\"");
    }
    if (j == 8) {
      json data = mlp_features(1);
      data[7] = "NaN";
      add_bad(payload({x_input(data)}),
              "input \"x\": data[7]: \"NaN\" is not a finite FP32 value, and this input does not allow "
              "non-finite "
              "values (allow_non_finite: false)");
    }
  }

  Daemon d(daemon_config(url, {mlp_queue(), encoder_queue()}), "models");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(60s));
  REQUIRE(wait_all_final(url, 60s));

  for (std::size_t j = 0; j < mlp_ids.size(); ++j) {
    const auto row = job(url, mlp_ids[j]);
    REQUIRE(row);
    check_result(
        *row, "mlp", "y",
        reference_forward(example_models().file("mlp.pt"), at::tensor(mlp_features(static_cast<int>(j)))));
  }
  for (std::size_t j = 0; j < encoder_ids.size(); ++j) {
    const auto row = job(url, encoder_ids[j]);
    REQUIRE(row);
    CAPTURE(lengths[j]);
    check_result(*row, "encoder", "embedding",
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
  // The supervisor set the thread environment of each executor before exec.
  for (const pid_t pid : d.executor_pids()) {
    const std::string env = environ_of(pid);
    if (env.empty()) continue;  // already gone
    CHECK(env.find(std::string("OMP_NUM_THREADS=1") + '\0') != std::string::npos);
    CHECK(env.find(std::string("OPENBLAS_NUM_THREADS=1") + '\0') != std::string::npos);
  }
}

TEST_CASE("an idle executor exits on purpose and a new one starts when work arrives") {
  const std::string url = fresh_inferq_database();
  TestQueue q = mlp_queue();
  q.extra_yaml += "idle_exit_after: 500ms\n";
  Daemon d(daemon_config(url, {q}), "idle");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(60s));
  REQUIRE(d.process().wait_log("exited after being idle for 500ms", 30s));
  CHECK(d.count_log("while idle") == 0);  // not reported as a crash
  CHECK(d.executor_pids().size() == 1);
  CHECK(d.process().running());

  const auto id = enqueue(url, "mlp", payload({x_input(mlp_features(3))}));
  REQUIRE(wait_all_final(url, 60s));
  const auto row = job(url, id);
  REQUIRE(row);
  check_result(*row, "mlp", "y",
               reference_forward(example_models().file("mlp.pt"), at::tensor(mlp_features(3))));
  CHECK(row->attempts == 1);
  CHECK(d.executor_pids().size() == 2);  // a second executor said ready
  CHECK(d.count_log("has work; starting an executor") == 1);
}

TEST_CASE(
    "SIGHUP after the model file changed: new executors serve the new model; one that does not load leaves "
    "the old serving") {
  const std::string url = fresh_inferq_database();
  const TempDir dir("inferq-reload-model");
  const std::string path = dir.file("model.pt");
  std::filesystem::copy_file(example_models().file("mlp.pt"), path);
  // The same network with every parameter doubled: same inputs and outputs, other results.
  const std::string doubled = dir.file("doubled.pt");
  {
    torch::jit::Module m = torch::jit::load(example_models().file("mlp.pt"));
    torch::NoGradGuard no_grad;
    for (auto p : m.parameters()) p.mul_(2);
    m.save(doubled);
  }
  // Replaced whole, as a deploy would: a new inode.
  const auto replace_model = [&](const std::string& from) {
    std::filesystem::copy_file(from, path + ".new", std::filesystem::copy_options::overwrite_existing);
    std::filesystem::rename(path + ".new", path);
  };
  TestQueue q = mlp_queue();
  q.model = path;
  const DaemonConfig cfg = daemon_config(url, {q});
  Daemon d(cfg, "reload-model");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(60s));
  const auto served_by = [&](int seed, const std::string& model_file) {
    const auto id = enqueue(url, "mlp", payload({x_input(mlp_features(seed))}));
    REQUIRE(wait_all_final(url, 60s));
    const auto row = job(url, id);
    REQUIRE(row);
    check_result(*row, "mlp", "y", reference_forward(model_file, at::tensor(mlp_features(seed))));
    CHECK(row->attempts == 1);
  };
  served_by(1, example_models().file("mlp.pt"));
  const auto first = d.executor_pids();
  REQUIRE(first.size() == 1);

  // A file that is not TorchScript: the new executor cannot start, so the
  // old one goes on serving the old model.
  const std::string garbage = dir.file("garbage.pt");
  std::ofstream(garbage) << "not a model";
  replace_model(garbage);
  d.reload_with(cfg.yaml());
  REQUIRE(d.process().wait_log("changed [mlp]", 30s));
  REQUIRE(d.process().wait_log("before it was ready (failure 2 in a row)", 30s));
  served_by(2, example_models().file("mlp.pt"));
  CHECK(d.executor_pids() == first);
  CHECK_FALSE(process_gone(first[0]));

  // A model that loads: a new executor serves it and the old one stops.
  replace_model(doubled);
  d.reload_with(cfg.yaml());
  REQUIRE(wait_until([&] { return d.executor_pids().size() == 2; }, 60s));
  REQUIRE(wait_until([&] { return process_gone(first[0]); }, 10s));
  served_by(3, doubled);
  // Each reload wrote the executors' config to a memfd: once no executor
  // runs under an old one, only the served one's stays open.
  const auto config_fds = [&] {
    int n = 0;
    const auto fds = std::filesystem::path("/proc") / std::to_string(d.pid()) / "fd";
    for (const auto& e : std::filesystem::directory_iterator(fds)) {
      std::error_code ec;
      if (std::filesystem::read_symlink(e.path(), ec).string().rfind("/memfd:inferq-executor-config", 0) == 0)
        ++n;
    }
    return n;
  };
  CHECK_MESSAGE(wait_until([&] { return config_fds() == 1; }, 10s), config_fds());
  CHECK(d.count_log("reloaded ") == 2);
  CHECK(d.count_log("start-up failed") == 0);
  CHECK(d.process().running());
}

TEST_CASE("a model queue that cannot start stops inferq run with a message naming the queue and key") {
  const std::string url = fresh_inferq_database();
  struct Case {
    std::string name;
    TestQueue queue;
    std::string message;
  };
  std::vector<Case> cases;
  {
    TestQueue q = mlp_queue();
    q.model = example_models().file("absent.pt");
    cases.push_back(
        {"missing model file", q, "start-up failed: queue \"mlp\": model: no such file: " + q.model});
  }
  {
    TestQueue q = mlp_queue();
    q.model = example_models().file("mlp.queue.yaml");
    cases.push_back({"not a TorchScript file", q,
                     "start-up failed: queue \"mlp\": model: cannot load " + q.model + " as TorchScript: "});
  }
  {
    TestQueue q = mlp_queue();
    q.extra_yaml =
        "device: cpu\n"
        "inputs: [{name: x, datatype: FP32, shape: [384]}, {name: z, datatype: FP32, shape: [2]}]\n"
        "outputs: [{name: y}]\n";
    cases.push_back(
        {"inputs that do not match forward()", q,
         "start-up failed: queue \"mlp\": inputs: declares 2 input(s) (x, z) but the model's forward() "
         "takes 1"});
  }
  {
    TestQueue q = mlp_queue();
    q.extra_yaml =
        "device: cuda:0\n"
        "inputs: [{name: x, datatype: FP32, shape: [384]}]\n"
        "outputs: [{name: y}]\n";
    cases.push_back(
        {"cuda:N on a CPU-only libtorch", q,
         "start-up failed: queue \"mlp\": device: cuda:0 needs CUDA, but this libtorch has no CUDA "
         "support or sees no GPU"});
  }
  for (const Case& c : cases) {
    SUBCASE(c.name.c_str()) {
      Daemon d(daemon_config(url, {c.queue}), "startup");
      INFO("daemon log:\n", d.log());
      const auto status = d.process().wait_exit(60s);
      REQUIRE(status);
      CHECK(exited_with(*status, 1));
      CHECK(d.log().find(c.message) != std::string::npos);
    }
  }
}

TEST_CASE("relative config and model paths work as in the quick start (issue 22 item 1)") {
  // `inferq run --config etc/inferq.yaml` from DIR, with `model:
  // ../models/mlp.pt`: executors read their copy of the config from
  // /proc/PID/fd/N, and must still find the model beside the file.
  const std::string url = fresh_inferq_database();
  TempDir dir("inferq-relative");
  std::filesystem::create_directory(dir.file("etc"));
  std::filesystem::create_directory_symlink(example_models().path(), dir.file("models"));
  TestQueue q = mlp_queue();
  q.model = "../models/mlp.pt";
  {
    std::ofstream out(dir.file("etc/inferq.yaml"));
    out << daemon_config(url, {q}).yaml();
  }
  ChildProcess d = [&] {
    const auto old_cwd = std::filesystem::current_path();
    std::filesystem::current_path(dir.path());  // the child inherits it
    const inferq::util::ScopeGuard restore_cwd([&] {
      std::error_code ignored;
      std::filesystem::current_path(old_cwd, ignored);
    });
    return ChildProcess({bin_path("inferq"), "run", "--config", "etc/inferq.yaml"},
                        {{"INFERQ_DATABASE_URL", url}}, dir.file("daemon.log"));
  }();
  INFO("daemon log:\n", d.log());
  const auto id = enqueue(url, "mlp", payload({x_input(mlp_features(5))}));
  REQUIRE(wait_all_final(url, 60s));
  const auto row = job(url, id);
  REQUIRE(row);
  check_result(*row, "mlp", "y",
               reference_forward(example_models().file("mlp.pt"), at::tensor(mlp_features(5))));
  CHECK(d.running());
  d.send_signal(SIGTERM);
  const auto status = d.wait_exit(30s);
  REQUIRE(status);
  CHECK(exited_with(*status, 0));
}

TEST_CASE("each unit's stages are timed in inferq_unit_stage_seconds (issue 21)") {
  const std::string url = fresh_inferq_database();
  std::vector<std::string> payloads;
  for (int j = 0; j < 20; ++j) payloads.push_back(payload({x_input(mlp_features(j))}));
  enqueue_many(url, "mlp", payloads);
  enqueue_many(url, "echo", {R"({"i": 1})", R"({"i": 2})", R"({"i": 3})"});
  Daemon d(daemon_config(url, {mlp_queue(8), test_queue("echo", "builtin:echo", 1, 2)}), "stages");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(60s));
  const auto address = d.metrics_address();
  REQUIRE(address);
  REQUIRE(wait_all_final(url, 60s));
  CHECK(state_counts(url)["succeeded"] == 23);
  const auto series = [](const std::string& queue, const std::string& stage, const char* part) {
    return "inferq_unit_stage_seconds_" + std::string(part) + "{queue=\"" + queue + "\",stage=\"" + stage +
           "\"}";
  };
  for (const std::string queue : {"mlp", "echo"}) {
    CAPTURE(queue);
    const std::string units_series = "inferq_batch_jobs_count{queue=\"" + queue + "\"}";
    // The completion's stage is observed once its commit returns.
    REQUIRE(wait_until(
        [&] {
          return scrape(*address, series(queue, "complete", "count")) == scrape(*address, units_series);
        },
        10s, 50ms));
    const auto page = http_get(*address, "/metrics");
    REQUIRE(page);
    const double units = metric_value(page->body, units_series).value_or(-1);
    CHECK(units >= (queue == "mlp" ? 3 : 2));
    for (const std::string stage : {"dispatch", "decode", "forward", "encode", "return", "complete"}) {
      CAPTURE(stage);
      CHECK(metric_value(page->body, series(queue, stage, "count")) == units);
    }
    const auto sum = [&](const std::string& stage) {
      return metric_value(page->body, series(queue, stage, "sum")).value_or(-1);
    };
    // The executor's stages lie inside the unit's run as the supervisor saw it.
    const double run =
        metric_value(page->body, "inferq_unit_run_seconds_sum{queue=\"" + queue + "\"}").value_or(0);
    CHECK(sum("forward") > 0);
    CHECK(sum("decode") + sum("forward") + sum("encode") <= run);
    CHECK(sum("return") >= 0);
    CHECK(sum("return") <= run);
    CHECK(sum("complete") > 0);
    if (queue == "mlp") {
      CHECK(sum("decode") > 0);
      CHECK(sum("encode") > 0);
    } else {
      CHECK(sum("decode") == 0);  // a built-in's whole run is its forward
      CHECK(sum("encode") == 0);
    }
  }
}
