#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "metrics/metrics.hpp"
#include "util/periodic_thread.hpp"

namespace inferq::metrics {

// GPU memory and utilisation through NVML, loaded at run time with dlopen so
// that inferq needs no NVIDIA library to build or run. When the library (or
// a GPU) is missing, available() is false, no thread runs and no GPU series
// exist. Otherwise a thread of its own samples every `interval` into
// `metrics`: an NVML call can hang with a wedged GPU, and then only that
// thread waits, never a scrape.
class GpuSampler {
 public:
  GpuSampler(Metrics& metrics, std::chrono::milliseconds interval,
             const std::string& library = "libnvidia-ml.so.1");
  ~GpuSampler();
  GpuSampler(const GpuSampler&) = delete;
  GpuSampler& operator=(const GpuSampler&) = delete;

  // True when NVML loaded, initialised and reported at least one GPU.
  bool available() const { return nvml_ != nullptr; }
  // Why it is not available (empty when it is), for the start-up log.
  const std::string& unavailable_reason() const { return reason_; }
  // Stops the thread; idempotent.
  void stop() noexcept;

 private:
  struct Nvml;
  void sample();

  Metrics& metrics_;
  std::chrono::milliseconds interval_;
  std::unique_ptr<Nvml> nvml_;
  std::string reason_;
  util::PeriodicThread thread_;
};

}  // namespace inferq::metrics
