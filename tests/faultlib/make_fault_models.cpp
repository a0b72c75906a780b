// inferq-make-fault-models DIR: writes DIR/faults.pt, a TorchScript model
// (input x FP32 [-1] -> output y = 2 * x) that calls the fault-injection ops
// of libinferq_faultlib, one per trigger value of faultlib.hpp. Test-only;
// the executor loads the library through the queue's `extra_libraries`.
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/frontend/sugared_value.h>
#include <torch/script.h>

#include <filesystem>
#include <iostream>
#include <string>

#include "faultlib/faultlib.hpp"

namespace {

// C++'s define() resolves only `torch` (to aten ops); Python's torch.ops is
// not there. This resolver also makes `inferq_test.OP` name inferq_test::OP;
// the saved model calls it as ops.inferq_test.OP, as a scripted one would.
struct FaultOpsResolver : torch::jit::Resolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(const std::string& name, torch::jit::GraphFunction&,
                                                         const torch::jit::SourceRange&) override {
    if (name == "torch") return std::make_shared<torch::jit::BuiltinModule>("aten");
    if (name == "inferq_test") return std::make_shared<torch::jit::BuiltinModule>("inferq_test");
    return nullptr;
  }
  c10::TypePtr resolveType(const std::string&, const torch::jit::SourceRange&) override { return nullptr; }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: inferq-make-fault-models DIR\n";
    return 2;
  }
  // The ops must be registered before define() compiles calls to them.
  if (inferq_faultlib_version() != 1) return 1;
  namespace f = inferq::test::faults;
  try {
    std::filesystem::create_directories(argv[1]);
    torch::jit::Module m("InferqFaults");
    // One statement per fault: `x = inferq_test.OP(x, TRIGGER[, 'MESSAGE'])`.
    const auto call = [](const std::string& op, int trigger, const std::string& message = {}) {
      return "    x = inferq_test." + op + "(x, " + std::to_string(trigger) +
             (message.empty() ? "" : ", '" + message + "'") + ")\n";
    };
    const std::string source =
        "def forward(self, x):\n" +
        call("raise_if", f::kIllegalAddress, "CUDA error: an illegal memory access was encountered") +
        call("raise_if", f::kOutOfMemory,
             "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity)") +
        call("oom_if", f::kOutOfMemoryType,
             "CUDA out of memory. Tried to allocate 1.00 GiB (raised as c10::OutOfMemoryError)") +
        call("raise_if", f::kCublasAlloc,
             "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`") +
        call("raise_if", f::kOther, "the model rejects this input (fault injection)") +
        call("raise_if", f::kDeviceAssert, "CUDA error: device-side assert triggered") +
        call("hang_if", f::kHang) + call("abort_if", f::kAbort) + "    return x * 2\n";
    m.define(source, std::make_shared<FaultOpsResolver>());
    const std::string path = std::string(argv[1]) + "/faults.pt";
    m.save(path);
    std::cout << path << "\n";
  } catch (const std::exception& e) {
    std::cerr << "inferq-make-fault-models: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
