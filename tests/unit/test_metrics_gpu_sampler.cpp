// src/metrics/gpu_sampler: without NVML (these test machines have no GPU)
// the sampler is unavailable, runs no thread and creates no GPU series.
#include "metrics/gpu_sampler.hpp"

#include <doctest.h>

namespace {

using inferq::metrics::BuildInfo;
using inferq::metrics::GpuSampler;
using inferq::metrics::Metrics;
using namespace std::chrono_literals;

}  // namespace

TEST_CASE("without libnvidia-ml the GPU series are absent and the reason is given") {
  Metrics m({"q"}, 1000ms, BuildInfo{"v"});
  GpuSampler gpus(m, 10ms);
  if (gpus.available()) {
    // A GPU host: then the series must be there.
    CHECK(m.expose().find("inferq_gpu_memory_total_bytes{") != std::string::npos);
    return;
  }
  CHECK(gpus.unavailable_reason().find("libnvidia-ml.so.1") != std::string::npos);
  CHECK(m.expose().find("inferq_gpu_") == std::string::npos);
  gpus.stop();
  gpus.stop();
}

TEST_CASE("a library that is not NVML is refused, not called") {
  Metrics m({"q"}, 1000ms, BuildInfo{"v"});
  GpuSampler gpus(m, 10ms, "libc.so.6");  // loads, but has no nvmlInit_v2
  CHECK_FALSE(gpus.available());
  CHECK(gpus.unavailable_reason() == "libc.so.6 lacks an NVML function inferq uses");
  CHECK(m.expose().find("inferq_gpu_") == std::string::npos);
}
