#include "executor/fault_policy.hpp"

#include <c10/util/Exception.h>

#include <atomic>
#include <stdexcept>
#include <utility>

#ifdef INFERQ_WITH_CUDA
#include <cuda_runtime_api.h>
#endif
#ifdef INFERQ_TORCH_CUDA_ALLOCATOR
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include "executor/handlers.hpp"

namespace inferq::executor {
namespace {

using protocol::JobOutput;
using protocol::Outcome;

// Errors after which the CUDA context is unusable (the sticky errors of the
// CUDA runtime), as their messages read.
constexpr std::string_view kStickyMessages[] = {
    "illegal memory access", "device-side assert",   "unspecified launch failure", "misaligned address",
    "illegal instruction",   "hardware stack error", "the launch timed out",
};

constexpr std::string_view kOutOfMemoryMessages[] = {
    "CUDA out of memory",          // c10's caching allocator
    "CUDA error: out of memory",   // C10_CUDA_CHECK of cudaErrorMemoryAllocation
    "CUBLAS_STATUS_ALLOC_FAILED",  // cuBLAS could not allocate its workspace
};

// The CUDA device this executor's model runs on; -1: none (a CPU model, or
// no CUDA in this build).
std::atomic<int> g_cuda_device{-1};

#ifdef INFERQ_WITH_CUDA
// A device is in use and the runtime can see it.
bool device_in_use() {
  const int index = g_cuda_device.load();
  if (index < 0) return false;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || index >= count) return false;
  return cudaSetDevice(index) == cudaSuccess;
}

// The device's error state after its queued work: synchronize, then the
// last error (which a sticky error keeps reporting for good).
int device_error() {
  const cudaError_t sync = cudaDeviceSynchronize();
  const cudaError_t last = cudaGetLastError();
  return static_cast<int>(last != cudaSuccess ? last : sync);
}
#endif

// The text of the error that `e` reports: c10::Error without its C++
// backtrace; of a TorchScript interpreter error (a header line, a traceback
// that quotes the model's source, then the original error's type and text)
// only the original error, so that the quoted source is never mistaken for
// the error.
std::string original_error(const std::exception& e) {
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10 != nullptr ? c10->what_without_backtrace() : e.what();
  constexpr std::string_view kInterpreter = "The following operation failed in the TorchScript interpreter.";
  if (text.rfind(kInterpreter, 0) != 0) return text;
  // The last line that reads "SomeError: ..." or "SomeException: ...".
  std::size_t end = text.size();
  while (end > 0) {
    const std::size_t start = text.rfind('\n', end - 1);
    const std::size_t from = start == std::string::npos ? 0 : start + 1;
    const std::string_view line(text.data() + from, end - from);
    const std::size_t colon = line.find(": ");
    if (colon != std::string_view::npos) {
      const std::string_view type = line.substr(0, colon);
      const bool word = type.find_first_of(" \t") == std::string_view::npos;
      const auto ends_with = [&](std::string_view suffix) {
        return type.size() >= suffix.size() && type.substr(type.size() - suffix.size()) == suffix;
      };
      if (word && (ends_with("Error") || ends_with("Exception"))) return text.substr(from);
    }
    if (start == std::string::npos) break;
    end = start;
  }
  return text;
}

std::vector<JobOutput> failed(std::size_t n, const std::string& message) {
  std::vector<JobOutput> outs(n);
  for (JobOutput& out : outs) {
    out.outcome = Outcome::kTransient;
    out.body = message;
  }
  return outs;
}

// Runs [begin, end) and appends its outputs to `outs` (see the header).
void run_range(std::size_t begin, std::size_t end,
               const std::function<std::vector<JobOutput>(std::size_t, std::size_t)>& forward,
               const std::function<void()>& release_memory, std::vector<JobOutput>& outs) {
  std::vector<JobOutput> got;
  FaultClass fault = FaultClass::kOther;
  std::string message;
  try {
    got = forward(begin, end);
  } catch (const FatalError&) {
    throw;
  } catch (const std::exception& e) {
    fault = classify_exception(e);
    message = error_message(e);
  } catch (...) {
    message = "the model threw something that is not a std::exception";
  }
  if (message.empty()) {
    if (got.size() != end - begin) {
      throw std::logic_error("forward returned " + std::to_string(got.size()) + " outputs for " +
                             std::to_string(end - begin) + " jobs");
    }
    for (JobOutput& out : got) outs.push_back(std::move(out));
    return;
  }
  switch (fault) {
    case FaultClass::kSticky:
      throw FatalError("sticky CUDA error, the executor must be replaced: " + message);
    case FaultClass::kOutOfMemory:
      release_memory();
      if (end - begin == 1) {
        outs.push_back(failed(1, "out of memory running this job alone: " + message).front());
        return;
      }
      {
        const std::size_t mid = begin + (end - begin) / 2;
        run_range(begin, mid, forward, release_memory, outs);
        run_range(mid, end, forward, release_memory, outs);
      }
      return;
    case FaultClass::kOther:
      for (JobOutput& out : failed(end - begin, "model failed: " + message)) outs.push_back(std::move(out));
      return;
  }
}

}  // namespace

std::string_view fault_class_name(FaultClass c) {
  switch (c) {
    case FaultClass::kSticky:
      return "sticky";
    case FaultClass::kOutOfMemory:
      return "out of memory";
    case FaultClass::kOther:
      return "other";
  }
  return "other";
}

FaultClass classify_message(std::string_view message) {
  for (const std::string_view s : kStickyMessages) {
    if (message.find(s) != std::string_view::npos) return FaultClass::kSticky;
  }
  for (const std::string_view s : kOutOfMemoryMessages) {
    if (message.find(s) != std::string_view::npos) return FaultClass::kOutOfMemory;
  }
  return FaultClass::kOther;
}

#ifdef INFERQ_WITH_CUDA
FaultClass classify_cuda_error(int code) {
  switch (static_cast<cudaError_t>(code)) {
    case cudaErrorIllegalAddress:
    case cudaErrorAssert:
    case cudaErrorLaunchFailure:
    case cudaErrorMisalignedAddress:
    case cudaErrorIllegalInstruction:
    case cudaErrorHardwareStackError:
    case cudaErrorLaunchTimeout:
      return FaultClass::kSticky;
    case cudaErrorMemoryAllocation:
      return FaultClass::kOutOfMemory;
    default:
      return FaultClass::kOther;
  }
}
#endif

FaultClass classify_exception(const std::exception& e) {
  if (dynamic_cast<const FatalError*>(&e) != nullptr) return FaultClass::kSticky;
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return FaultClass::kOutOfMemory;
#ifdef INFERQ_WITH_CUDA
  if (device_in_use()) {
    const FaultClass by_code = classify_cuda_error(device_error());
    if (by_code != FaultClass::kOther) return by_code;
  }
#endif
  return classify_message(original_error(e));
}

std::string error_message(const std::exception& e) {
  const std::string text = original_error(e);
  std::string line = text.substr(0, text.find('\n'));
  constexpr std::string_view kPrefix = "RuntimeError: ";
  if (line.rfind(kPrefix, 0) == 0) line.erase(0, kPrefix.size());
  return line;
}

void set_cuda_device(int index) { g_cuda_device.store(index); }

void synchronize_device() {
#ifdef INFERQ_WITH_CUDA
  if (!device_in_use()) return;
  const cudaError_t err = cudaDeviceSynchronize();
  if (err != cudaSuccess) {
    // Left for cudaGetLastError, which classify_exception reads.
    throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(err));
  }
#endif
}

void release_cached_memory() {
#ifdef INFERQ_TORCH_CUDA_ALLOCATOR
  if (g_cuda_device.load() >= 0) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
}

std::vector<JobOutput> run_with_fault_policy(
    std::size_t n, const std::function<std::vector<JobOutput>(std::size_t begin, std::size_t end)>& forward,
    const std::function<void()>& release_memory) {
  std::vector<JobOutput> outs;
  outs.reserve(n);
  if (n > 0) run_range(0, n, forward, release_memory, outs);
  return outs;
}

}  // namespace inferq::executor
