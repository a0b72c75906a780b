// libinferq_faultlib: test-only TorchScript custom ops that fail the way GPU
// models fail in production, so a CPU-only machine can exercise every path of
// the executor's fault handling (issue 3, part 6). Each op returns its input
// unchanged unless some element of it equals `trigger`; then it acts. A model
// loads them through the queue key `extra_libraries`.
#include <torch/library.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "faultlib/faultlib.hpp"

namespace {

bool triggered(const at::Tensor& x, int64_t trigger) { return (x == trigger).any().item<bool>(); }

// Throws a plain std::runtime_error with `message`, as a library error
// rethrown by the TorchScript interpreter looks.
at::Tensor raise_if(const at::Tensor& x, int64_t trigger, const std::string& message) {
  if (triggered(x, trigger)) throw std::runtime_error(message);
  return x;
}

// Throws c10::OutOfMemoryError with `message`, as c10's CUDA caching
// allocator does.
at::Tensor oom_if(const at::Tensor& x, int64_t trigger, const std::string& message) {
  TORCH_CHECK_WITH(OutOfMemoryError, !triggered(x, trigger), message);
  return x;
}

// Never returns: a hung kernel or driver call. Only a signal ends it.
at::Tensor hang_if(const at::Tensor& x, int64_t trigger) {
  if (triggered(x, trigger)) {
    for (;;) ::pause();
  }
  return x;
}

// Aborts the process, as a failed assertion in a native library does.
at::Tensor abort_if(const at::Tensor& x, int64_t trigger) {
  if (triggered(x, trigger)) std::abort();
  return x;
}

}  // namespace

TORCH_LIBRARY(inferq_test, m) {
  m.def("raise_if(Tensor x, int trigger, str message) -> Tensor", &raise_if);
  m.def("oom_if(Tensor x, int trigger, str message) -> Tensor", &oom_if);
  m.def("hang_if(Tensor x, int trigger) -> Tensor", &hang_if);
  m.def("abort_if(Tensor x, int trigger) -> Tensor", &abort_if);
}

extern "C" int inferq_faultlib_version() { return 1; }
