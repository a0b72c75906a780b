// `inferq-executor make-models DIR`: the example models, built with
// torch::jit::Module::define from fixed seeds, so no Python is needed.
#include <torch/script.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "executor/model_handler.hpp"

namespace inferq::executor {
namespace {

constexpr std::int64_t kWidth = 384;
constexpr std::int64_t kHidden = 1536;
constexpr std::int64_t kVocab = 8192;
constexpr int kLayers = 4;
constexpr int kHeads = 6;

// A weight of `rows` x `cols`, scaled so activations keep unit variance.
at::Tensor weight(std::int64_t rows, std::int64_t cols) {
  return at::randn({rows, cols}) * (1.0 / std::sqrt(static_cast<double>(rows)));
}

at::Tensor small(std::int64_t n) { return at::randn({n}) * 0.02; }

void save(torch::jit::Module& module, const std::string& path) {
  module.eval();
  module.save(path);
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  if (!f.flush()) throw std::runtime_error("cannot write " + path);
}

void make_mlp(const std::string& dir) {
  at::manual_seed(1);
  torch::jit::Module m("InferqMlp");
  m.register_parameter("w1", weight(kWidth, kHidden), false);
  m.register_parameter("b1", small(kHidden), false);
  m.register_parameter("w2", weight(kHidden, kWidth), false);
  m.register_parameter("b2", small(kWidth), false);
  m.define(R"(
def forward(self, x):
    h = torch.relu(torch.matmul(x, self.w1) + self.b1)
    return torch.matmul(h, self.w2) + self.b2
)");
  save(m, dir + "/mlp.pt");
}

void make_encoder(const std::string& dir) {
  at::manual_seed(2);
  torch::jit::Module m("InferqEncoder");
  m.register_parameter("tok_emb", at::randn({kVocab, kWidth}) * 0.5, false);
  const std::int64_t head = kWidth / kHeads;
  std::string src = R"(
def forward(self, input_ids):
    mask = input_ids != 0
    B = input_ids.size(0)
    T = input_ids.size(1)
    x = torch.embedding(self.tok_emb, input_ids)
    pos = torch.arange(T, device=input_ids.device).to(x.dtype).unsqueeze(1)
    freq = torch.exp(torch.arange(0, HALF, device=input_ids.device).to(x.dtype) * (-9.210340371976184 / HALF))
    x = x + torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], 1)
    bias = (~mask).to(x.dtype).mul(-1e9).unsqueeze(1).unsqueeze(1)
)";
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = "self.l" + std::to_string(l) + "_";
    m.register_parameter("l" + std::to_string(l) + "_wqkv", weight(kWidth, 3 * kWidth), false);
    m.register_parameter("l" + std::to_string(l) + "_bqkv", small(3 * kWidth), false);
    m.register_parameter("l" + std::to_string(l) + "_wo", weight(kWidth, kWidth), false);
    m.register_parameter("l" + std::to_string(l) + "_bo", small(kWidth), false);
    m.register_parameter("l" + std::to_string(l) + "_ln1w", at::ones({kWidth}), false);
    m.register_parameter("l" + std::to_string(l) + "_ln1b", at::zeros({kWidth}), false);
    m.register_parameter("l" + std::to_string(l) + "_w1", weight(kWidth, kHidden), false);
    m.register_parameter("l" + std::to_string(l) + "_b1", small(kHidden), false);
    m.register_parameter("l" + std::to_string(l) + "_w2", weight(kHidden, kWidth), false);
    m.register_parameter("l" + std::to_string(l) + "_b2", small(kWidth), false);
    m.register_parameter("l" + std::to_string(l) + "_ln2w", at::ones({kWidth}), false);
    m.register_parameter("l" + std::to_string(l) + "_ln2b", at::zeros({kWidth}), false);
    src += "    qkv = torch.matmul(x, " + p + "wqkv) + " + p + "bqkv\n";
    src += "    q = qkv.narrow(2, 0, W).reshape(B, T, H, D).transpose(1, 2)\n";
    src += "    k = qkv.narrow(2, W, W).reshape(B, T, H, D).transpose(1, 2)\n";
    src += "    v = qkv.narrow(2, 2 * W, W).reshape(B, T, H, D).transpose(1, 2)\n";
    src += "    att = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * SCALE + bias, -1)\n";
    src += "    a = torch.matmul(att, v).transpose(1, 2).reshape(B, T, W)\n";
    src += "    x = torch.layer_norm(x + torch.matmul(a, " + p + "wo) + " + p + "bo, [W], " + p + "ln1w, " +
           p + "ln1b, 1e-5)\n";
    src += "    h = torch.gelu(torch.matmul(x, " + p + "w1) + " + p + "b1)\n";
    src += "    x = torch.layer_norm(x + torch.matmul(h, " + p + "w2) + " + p + "b2, [W], " + p + "ln2w, " +
           p + "ln2b, 1e-5)\n";
  }
  src += R"(
    m = mask.to(x.dtype).unsqueeze(2)
    return (x * m).sum(1) / torch.clamp(m.sum(1), min=1.0)
)";
  const auto replace_all = [&](const std::string& from, const std::string& to) {
    for (std::size_t at = src.find(from); at != std::string::npos; at = src.find(from, at + to.size())) {
      src.replace(at, from.size(), to);
    }
  };
  replace_all("HALF", std::to_string(kWidth / 2));
  replace_all("SCALE", std::to_string(1.0 / std::sqrt(static_cast<double>(head))));
  replace_all("W)", std::to_string(kWidth) + ")");
  replace_all("W,", std::to_string(kWidth) + ",");
  replace_all("[W]", "[" + std::to_string(kWidth) + "]");
  replace_all("H, D)", std::to_string(kHeads) + ", " + std::to_string(head) + ")");
  m.define(src);
  save(m, dir + "/encoder.pt");
}

}  // namespace

void make_example_models(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create " + dir + ": " + ec.message());
  char resolved[PATH_MAX];
  if (::realpath(dir.c_str(), resolved) == nullptr) {
    throw std::runtime_error("cannot resolve " + dir + ": " + std::strerror(errno));
  }
  const std::string abs = resolved;
  try {
    make_mlp(abs);
    make_encoder(abs);
  } catch (const c10::Error& e) {
    throw std::runtime_error(std::string("building the example models failed: ") +
                             e.what_without_backtrace());
  }
  write_file(
      abs + "/mlp.queue.yaml",
      "# The queue entry serving mlp.pt (written by inferq-executor make-models): an item of `queues:`.\n"
      "- name: mlp\n"
      "  model: " +
          abs +
          "/mlp.pt\n"
          "  device: auto\n"
          "  instances: 1\n"
          "  threads: 0\n"
          "  batch: {max_jobs: 32, max_wait: 0ms}\n"
          "  inputs: [{name: x, datatype: FP32, shape: [384]}]\n"
          "  outputs: [{name: y}]\n"
          "  idle_exit_after: 10m\n");
  write_file(
      abs + "/encoder.queue.yaml",
      "# The queue entry serving encoder.pt (written by inferq-executor make-models): an item of `queues:`.\n"
      "# input_ids are token ids in [1, 8191]; 0 is padding.\n"
      "- name: encoder\n"
      "  model: " +
          abs +
          "/encoder.pt\n"
          "  device: auto\n"
          "  instances: 1\n"
          "  threads: 0\n"
          "  batch: {max_jobs: 32, max_wait: 0ms}\n"
          "  inputs: [{name: input_ids, datatype: INT64, shape: [-1], pad: 0}]\n"
          "  outputs: [{name: embedding}]\n"
          "  idle_exit_after: 10m\n");
}

}  // namespace inferq::executor
