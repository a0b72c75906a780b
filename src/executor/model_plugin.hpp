#pragma once

#include <string>

#include "config/settings.hpp"
#include "executor/handlers.hpp"

// The TorchScript half of inferq-executor lives in libinferq_model.so, beside
// the executable, and is loaded only by executors of model queues (and by
// make-models): libtorch takes a second or more to load, and an executor of a
// built-in queue, restarted after a crash or a deadline kill, should be back
// in milliseconds. Torch-free: only model_handler.cpp and make_models.cpp,
// which make up the library, include torch.
namespace inferq::executor {

// What libinferq_model.so exports (see model_handler.hpp for the contracts).
// The functions throw std::exception subclasses (StartupError and others),
// which cross the library boundary like any C++ exception.
struct ModelPlugin {
  void (*set_torch_threads)(int threads);
  Handler* (*make_model_handler)(const config::QueueSettings& queue);  // owned by the caller
  void (*make_example_models)(const std::string& dir);
};

// Loads libinferq_model.so from the directory of this executable (once) and
// returns its functions. Throws std::runtime_error naming the library and
// dlerror() when it cannot be loaded.
const ModelPlugin& model_plugin();

}  // namespace inferq::executor

// The library's one exported symbol.
extern "C" const inferq::executor::ModelPlugin* inferq_model_plugin_v1();
