// The executor's fault policy: classification of errors by type, CUDA code
// and message; the split-on-out-of-memory recursion with plain callables; and
// the model handler in-process on the fault-injection model (its ops come
// from libinferq_faultlib, loaded through extra_libraries as in production).
#include <doctest.h>
#include <nlohmann/json.hpp>

#include <c10/util/Exception.h>

#include <algorithm>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#ifdef INFERQ_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "config/settings.hpp"
#include "executor/fault_policy.hpp"
#include "executor/handlers.hpp"
#include "executor/model_handler.hpp"
#include "faultlib/faultlib.hpp"
#include "support/child_process.hpp"
#include "support/test_env.hpp"

using inferq::executor::classify_exception;
using inferq::executor::classify_message;
using inferq::executor::error_message;
using inferq::executor::FatalError;
using inferq::executor::FaultClass;
using inferq::executor::run_with_fault_policy;
using inferq::protocol::JobOutput;
using inferq::protocol::Outcome;
namespace faults = inferq::test::faults;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// What the TorchScript interpreter makes of an error raised inside an op:
// its traceback quotes the model's source, which may mention any error.
std::string interpreter_wrapped(const std::string& message) {
  return "The following operation failed in the TorchScript interpreter.\n"
         "Traceback of TorchScript (most recent call last):\n"
         "  File \"<string>\", line 3, in forward\n"
         "    x = inferq_test.raise_if(x, 11, 'CUDA error: an illegal memory access was encountered')\n"
         "    x = inferq_test.raise_if(x, 12, 'CUDA out of memory. Tried to allocate 2.00 GiB')\n"
         "        ~~~~~~~~~~~~~~~~~~~~ <--- HERE\n"
         "RuntimeError: " +
         message + "\n";
}

// A fake batch runner over jobs whose ids are their indexes. `fails(b, e)`
// returns the exception to throw for range [b, e) (or nullptr). Records
// every call and how often each job was part of a successful range.
struct FakeModel {
  std::function<std::exception_ptr(std::size_t, std::size_t)> fails;
  std::vector<std::pair<std::size_t, std::size_t>> calls;
  std::map<std::size_t, int> succeeded;  // job -> successful runs
  int releases = 0;

  std::vector<JobOutput> run(std::size_t n) {
    return run_with_fault_policy(
        n,
        [&](std::size_t b, std::size_t e) {
          calls.emplace_back(b, e);
          if (auto ex = fails(b, e)) std::rethrow_exception(ex);
          std::vector<JobOutput> outs;
          for (std::size_t i = b; i < e; ++i) {
            ++succeeded[i];
            outs.push_back(
                JobOutput{static_cast<std::int64_t>(i), Outcome::kSucceeded, "ok " + std::to_string(i)});
          }
          return outs;
        },
        [&] { ++releases; });
  }
};

bool contains(std::size_t b, std::size_t e, std::size_t job) { return b <= job && job < e; }

}  // namespace

TEST_CASE("classify_message: sticky CUDA errors, out of memory, and everything else") {
  for (const char* m :
       {"CUDA error: an illegal memory access was encountered", "CUDA error: device-side assert triggered",
        "CUDA error: unspecified launch failure", "CUDA error: misaligned address",
        "CUDA error: an illegal instruction was encountered", "CUDA error: hardware stack error",
        "CUDA error: the launch timed out and was terminated"}) {
    CAPTURE(m);
    CHECK(classify_message(m) == FaultClass::kSticky);
    CHECK(classify_exception(std::runtime_error(interpreter_wrapped(m))) == FaultClass::kSticky);
  }
  for (const char* m : {"CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 7.79 GiB total capacity)",
                        "CUDA error: out of memory",
                        "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"}) {
    CAPTURE(m);
    CHECK(classify_message(m) == FaultClass::kOutOfMemory);
    CHECK(classify_exception(std::runtime_error(interpreter_wrapped(m))) == FaultClass::kOutOfMemory);
  }
  for (const char* m : {"", "shape mismatch: [2, 3] vs [3, 2]", "expected scalar type Float but found Long",
                        "DefaultCPUAllocator: not enough memory"}) {
    CAPTURE(m);
    CHECK(classify_message(m) == FaultClass::kOther);
  }
}

TEST_CASE(
    "an interpreter error is classified by its original error, not by the source its traceback quotes") {
  CHECK(classify_exception(std::runtime_error(
            interpreter_wrapped("CUDA out of memory. Tried to allocate 2 GiB"))) == FaultClass::kOutOfMemory);
  CHECK(classify_exception(std::runtime_error(interpreter_wrapped("index 7 is out of bounds"))) ==
        FaultClass::kOther);
  // A multi-line original error (as c10's CUDA checks write them).
  const std::string assert_text =
      "CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously reported at some "
      "other "
      "API call\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1.";
  CHECK(classify_exception(std::runtime_error(interpreter_wrapped(assert_text))) == FaultClass::kSticky);
  CHECK(error_message(std::runtime_error(interpreter_wrapped(assert_text))) ==
        "CUDA error: device-side assert triggered");
}

TEST_CASE("classify_exception: by type first, then by message") {
  CHECK(classify_exception(FatalError("anything")) == FaultClass::kSticky);
  try {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "Tried to allocate 2 GiB");  // no telling message
  } catch (const c10::OutOfMemoryError& e) {
    CHECK(classify_exception(e) == FaultClass::kOutOfMemory);
  }
  try {
    TORCH_CHECK(false, "CUDA error: an illegal memory access was encountered");
  } catch (const c10::Error& e) {
    CHECK(classify_exception(e) == FaultClass::kSticky);
  }
  CHECK(classify_exception(std::runtime_error(interpreter_wrapped("CUDA out of memory. Tried"))) ==
        FaultClass::kOutOfMemory);
  CHECK(classify_exception(std::runtime_error("index out of range")) == FaultClass::kOther);
}

TEST_CASE("error_message: the original error, without backtrace or TorchScript traceback") {
  CHECK(error_message(std::runtime_error(interpreter_wrapped("CUDA error: device-side assert triggered"))) ==
        "CUDA error: device-side assert triggered");
  CHECK(error_message(std::runtime_error("first line\nsecond line")) == "first line");
  try {
    TORCH_CHECK(false, "shape mismatch");
  } catch (const c10::Error& e) {
    CHECK(error_message(e) == "shape mismatch");
  }
}

#ifdef INFERQ_WITH_CUDA
TEST_CASE("classify_cuda_error maps the CUDA runtime's codes") {
  using inferq::executor::classify_cuda_error;
  for (const cudaError_t code :
       {cudaErrorIllegalAddress, cudaErrorAssert, cudaErrorLaunchFailure, cudaErrorMisalignedAddress,
        cudaErrorIllegalInstruction, cudaErrorHardwareStackError, cudaErrorLaunchTimeout}) {
    CAPTURE(static_cast<int>(code));
    CHECK(classify_cuda_error(code) == FaultClass::kSticky);
  }
  CHECK(classify_cuda_error(cudaErrorMemoryAllocation) == FaultClass::kOutOfMemory);
  CHECK(classify_cuda_error(cudaSuccess) == FaultClass::kOther);
  CHECK(classify_cuda_error(cudaErrorInvalidValue) == FaultClass::kOther);
}
#endif

TEST_CASE("without a device in use, synchronize_device and release_cached_memory do nothing") {
  CHECK_NOTHROW(inferq::executor::synchronize_device());
  CHECK_NOTHROW(inferq::executor::release_cached_memory());
}

TEST_CASE("run_with_fault_policy: a batch that succeeds runs once") {
  FakeModel m;
  m.fails = [](std::size_t, std::size_t) { return std::exception_ptr(); };
  const auto outs = m.run(16);
  REQUIRE(outs.size() == 16);
  for (std::size_t i = 0; i < 16; ++i) {
    CHECK(outs[i].outcome == Outcome::kSucceeded);
    CHECK(outs[i].body == "ok " + std::to_string(i));
  }
  CHECK(m.calls == std::vector<std::pair<std::size_t, std::size_t>>{{0, 16}});
  CHECK(m.releases == 0);
  CHECK(m.run(0).empty());
  CHECK(m.calls.size() == 1);
}

TEST_CASE(
    "run_with_fault_policy: out of memory on one job of 16 fails it alone; the 15 others succeed once") {
  for (const bool typed : {false, true}) {
    for (const std::size_t bad : {std::size_t{0}, std::size_t{5}, std::size_t{15}}) {
      CAPTURE(typed);
      CAPTURE(bad);
      FakeModel m;
      m.fails = [&](std::size_t b, std::size_t e) -> std::exception_ptr {
        if (!contains(b, e, bad)) return nullptr;
        if (typed) {
          try {
            TORCH_CHECK_WITH(OutOfMemoryError, false, "Tried to allocate 8.00 GiB");
          } catch (...) {
            return std::current_exception();
          }
        }
        return std::make_exception_ptr(
            std::runtime_error(interpreter_wrapped("CUDA out of memory. Tried to allocate 8.00 GiB")));
      };
      const auto outs = m.run(16);
      REQUIRE(outs.size() == 16);
      for (std::size_t i = 0; i < 16; ++i) {
        CAPTURE(i);
        if (i == bad) {
          CHECK(outs[i].outcome == Outcome::kTransient);
          CHECK(outs[i].body.find("out of memory running this job alone") != std::string::npos);
          CHECK(outs[i].body.find("Tried to allocate 8.00 GiB") != std::string::npos);
          CHECK(m.succeeded.count(i) == 0);
        } else {
          CHECK(outs[i].outcome == Outcome::kSucceeded);
          CHECK(outs[i].body == "ok " + std::to_string(i));
          CHECK(m.succeeded[i] == 1);  // never run again once it succeeded
        }
      }
      // 16 -> 8 -> 4 -> 2 -> 1: one failure per level down to the job alone.
      CHECK(m.releases == 5);
      CHECK(m.calls.size() == 9);
      CHECK(std::count(m.calls.begin(), m.calls.end(), std::pair<std::size_t, std::size_t>{bad, bad + 1}) ==
            1);
    }
  }
}

TEST_CASE("run_with_fault_policy: out of memory everywhere runs each job alone once, then fails each") {
  FakeModel m;
  m.fails = [](std::size_t, std::size_t) {
    return std::make_exception_ptr(std::runtime_error("CUBLAS_STATUS_ALLOC_FAILED"));
  };
  const auto outs = m.run(5);
  REQUIRE(outs.size() == 5);
  for (const JobOutput& o : outs) CHECK(o.outcome == Outcome::kTransient);
  std::map<std::size_t, int> alone;
  for (const auto& [b, e] : m.calls) {
    if (e - b == 1) ++alone[b];
  }
  CHECK(alone == std::map<std::size_t, int>{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}});
  CHECK(m.releases == static_cast<int>(m.calls.size()));
}

TEST_CASE("run_with_fault_policy: a sticky error throws FatalError, even in a split half") {
  FakeModel m;
  m.fails = [](std::size_t b, std::size_t e) {
    return std::make_exception_ptr(
        std::runtime_error("CUDA error: an illegal memory access was encountered"));
    (void)b, (void)e;
  };
  CHECK_THROWS_WITH_AS(m.run(4), doctest::Contains("an illegal memory access was encountered"), FatalError);
  CHECK(m.calls.size() == 1);

  // Out of memory on the whole batch, then a device-side assert in the second half.
  FakeModel split;
  split.fails = [](std::size_t b, std::size_t e) -> std::exception_ptr {
    if (b == 0 && e == 8) return std::make_exception_ptr(std::runtime_error("CUDA out of memory."));
    if (contains(b, e, 6))
      return std::make_exception_ptr(std::runtime_error("CUDA error: device-side assert triggered"));
    return nullptr;
  };
  CHECK_THROWS_WITH_AS(split.run(8), doctest::Contains("device-side assert"), FatalError);
  CHECK(split.releases == 1);

  // A FatalError thrown by forward itself passes through unchanged.
  FakeModel fatal;
  fatal.fails = [](std::size_t, std::size_t) { return std::make_exception_ptr(FatalError("gone")); };
  CHECK_THROWS_WITH_AS(fatal.run(2), "gone", FatalError);
}

TEST_CASE("run_with_fault_policy: any other error fails the whole range transiently, once") {
  FakeModel m;
  m.fails = [](std::size_t, std::size_t) {
    return std::make_exception_ptr(std::runtime_error(interpreter_wrapped("expected 3 dims, got 2")));
  };
  const auto outs = m.run(6);
  REQUIRE(outs.size() == 6);
  for (const JobOutput& o : outs) {
    CHECK(o.outcome == Outcome::kTransient);
    CHECK(o.body == "model failed: expected 3 dims, got 2");
  }
  CHECK(m.calls.size() == 1);
  CHECK(m.releases == 0);
}

TEST_CASE("run_with_fault_policy: forward returning the wrong number of outputs is a bug") {
  CHECK_THROWS_AS(run_with_fault_policy(
                      3, [](std::size_t, std::size_t) { return std::vector<JobOutput>(2); }, [] {}),
                  std::logic_error);
}

// --- the model handler on the fault-injection model, in-process ---

namespace {

const inferq::test::TempDir& fault_models() {
  static inferq::test::TempDir dir("inferq-fault-models");
  static const bool made = [] {
    inferq::test::ChildProcess make({INFERQ_MAKE_FAULT_MODELS, dir.path()});
    const auto status = make.wait_exit(120s);
    if (!status || !inferq::test::exited_with(*status, 0))
      throw std::runtime_error("inferq-make-fault-models failed:\n" + make.log());
    return true;
  }();
  (void)made;
  return dir;
}

inferq::config::QueueSettings fault_queue() {
  inferq::config::QueueSettings q;
  q.name = "faults";
  q.model = fault_models().file("faults.pt");
  q.device = "cpu";
  q.threads = 1;
  q.batch.max_jobs = 16;
  q.inputs = {inferq::config::ModelInput{"x", "FP32", {4}, 0, false}};
  q.outputs = {inferq::config::ModelOutput{"y"}};
  q.extra_libraries = {INFERQ_FAULTLIB_PATH};
  return q;
}

std::string x_payload(float v) {
  return json{{"inputs", {{{"name", "x"}, {"datatype", "FP32"}, {"shape", {4}}, {"data", {v, v, v, v}}}}}}
      .dump();
}

inferq::protocol::RunUnit unit_of(std::size_t n, std::size_t bad, int trigger) {
  inferq::protocol::RunUnit unit;
  unit.unit_id = 7;
  for (std::size_t i = 0; i < n; ++i) {
    unit.jobs.push_back({static_cast<std::int64_t>(100 + i),
                         x_payload(i == bad ? static_cast<float>(trigger) : static_cast<float>(i) + 0.5f)});
  }
  return unit;
}

}  // namespace

TEST_CASE("the model handler applies the fault policy to the fault-injection model") {
  auto handler = inferq::executor::make_model_handler(fault_queue());

  SUBCASE("out of memory on one job of 16: the 15 others succeed with their own results") {
    for (const int trigger : {faults::kOutOfMemory, faults::kOutOfMemoryType, faults::kCublasAlloc}) {
      CAPTURE(trigger);
      const auto result = handler->run_unit(unit_of(16, 9, trigger));
      CHECK(result.unit_id == 7);
      REQUIRE(result.jobs.size() == 16);
      for (std::size_t i = 0; i < 16; ++i) {
        CAPTURE(i);
        const JobOutput& o = result.jobs[i];
        CHECK(o.job_id == static_cast<std::int64_t>(100 + i));
        if (i == 9) {
          CHECK(o.outcome == Outcome::kTransient);
          CHECK(o.body.rfind("out of memory running this job alone: ", 0) == 0);
          continue;
        }
        REQUIRE(o.outcome == Outcome::kSucceeded);
        const float want = 2.0f * (static_cast<float>(i) + 0.5f);
        CHECK(json::parse(o.body).at("outputs").at(0).at("data") == json::array({want, want, want, want}));
      }
    }
  }
  SUBCASE("a sticky error is fatal to the executor") {
    for (const int trigger : {faults::kIllegalAddress, faults::kDeviceAssert}) {
      CAPTURE(trigger);
      CHECK_THROWS_WITH_AS(handler->run_unit(unit_of(4, 2, trigger)), doctest::Contains("sticky CUDA error"),
                           FatalError);
    }
  }
  SUBCASE("any other error fails the whole unit transiently with the model's message") {
    const auto result = handler->run_unit(unit_of(4, 1, faults::kOther));
    REQUIRE(result.jobs.size() == 4);
    for (const JobOutput& o : result.jobs) {
      CHECK(o.outcome == Outcome::kTransient);
      CHECK(o.body == "model failed: the model rejects this input (fault injection)");
    }
  }
}
