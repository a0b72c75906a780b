#pragma once

#include <torch/script.h>

#include <cstdint>
#include <string>
#include <vector>

#include "support/test_env.hpp"

// The example models (`inferq-executor make-models`: mlp.pt, encoder.pt and
// their queue files), inputs for them, and the raw forward pass that served
// results are compared with. Links torch: only tests that run it use this.
namespace inferq::test {

// The example models in a temp dir, made once per test binary by the real
// executor binary.
const TempDir& example_models();

// 384 features for mlp.pt, the same for the same seed.
std::vector<float> mlp_features(int seed);

// `n` token ids for encoder.pt (1..8000), the same for the same seed.
std::vector<std::int64_t> token_ids(std::size_t n, std::int64_t seed);

// The model at `path` run on one job's `input`, unbatched and unpadded: the
// reference a served result must equal.
std::vector<float> reference_forward(const std::string& path, const at::Tensor& input);

}  // namespace inferq::test
