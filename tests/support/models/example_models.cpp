#include "support/models/example_models.hpp"

#include <chrono>

#include "support/child_process.hpp"

namespace inferq::test {

const TempDir& example_models() {
  static TempDir dir("inferq-models");
  static const bool made = [] {
    run_to_success({bin_path("inferq-executor"), "make-models", dir.path()}, std::chrono::seconds(120),
                   "make-models");
    return true;
  }();
  (void)made;
  return dir;
}

std::vector<float> mlp_features(int seed) {
  std::vector<float> x(384);
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<float>((seed * 37 + static_cast<int>(i) * 11) % 101) / 50.0f - 1.0f;
  return x;
}

std::vector<std::int64_t> token_ids(std::size_t n, std::int64_t seed) {
  std::vector<std::int64_t> ids;
  for (std::size_t i = 0; i < n; ++i)
    ids.push_back(1 + (seed * 131 + static_cast<std::int64_t>(i) * 71) % 8000);
  return ids;
}

std::vector<float> reference_forward(const std::string& path, const at::Tensor& input) {
  torch::jit::Module m = torch::jit::load(path);
  m.eval();
  c10::InferenceMode guard;
  const at::Tensor out = m.forward({input.unsqueeze(0)}).toTensor().contiguous();
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

}  // namespace inferq::test
