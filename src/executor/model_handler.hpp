#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "config/settings.hpp"
#include "executor/handlers.hpp"

// TorchScript model queues. Only model_handler.cpp and make_models.cpp
// include torch; nothing of it shows in these declarations.
namespace inferq::executor {

// A model queue that cannot start (missing or unloadable model, a device this
// libtorch cannot use, inputs that do not match forward(), a failed warm-up).
// what() names the queue and the configuration key.
class StartupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Sets torch's intra-op threads to `threads` (at least 1) and its inter-op
// threads to 1 (one forward runs at a time). Call once, before any model.
void set_torch_threads(int threads);

// Loads `queue`'s extra libraries and model on its device, checks the model
// against the declared inputs, and warms it up at batch 1 and max_jobs.
// The handler batches each unit: it decodes every payload (a bad one is a
// permanent failure of that job alone), stacks the valid jobs along a new
// batch dimension (variable-length dimensions padded with the input's pad),
// runs one forward pass under c10::InferenceMode and splits the outputs back
// into one result per job. Throws StartupError. Blocks while loading.
std::unique_ptr<Handler> make_model_handler(const config::QueueSettings& queue);

// Writes the example models into `dir` (created if missing) with fixed seeds:
// mlp.pt (x FP32 [384] -> y FP32 [384] through a 1536-wide hidden layer) and
// encoder.pt (input_ids INT64 [-1], 0 = padding -> embedding FP32 [384], a
// 4-layer, 6-head transformer encoder mean-pooled over the real tokens),
// each with NAME.queue.yaml beside it: the queue entry that serves it. Throws
// std::runtime_error on failure.
void make_example_models(const std::string& dir);

}  // namespace inferq::executor
