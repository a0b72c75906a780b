#include "metrics/gpu_sampler.hpp"

#include <dlfcn.h>

#include <vector>

namespace inferq::metrics {
namespace {

// The few NVML declarations used (nvml.h is not needed to build): opaque
// device handles, return code 0 = NVML_SUCCESS, and two result structs whose
// layout NVML has kept since its first versions.
using NvmlReturn = int;
using NvmlDevice = void*;
struct NvmlMemory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
struct NvmlUtilization {
  unsigned int gpu;     // percent of time a kernel ran
  unsigned int memory;  // percent of time memory was read or written
};
constexpr NvmlReturn kNvmlSuccess = 0;
constexpr unsigned kUuidSize = 96;  // NVML_DEVICE_UUID_V2_BUFFER_SIZE

}  // namespace

struct GpuSampler::Nvml {
  void* lib = nullptr;
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*shutdown)() = nullptr;
  NvmlReturn (*count)(unsigned*) = nullptr;
  NvmlReturn (*handle)(unsigned, NvmlDevice*) = nullptr;
  NvmlReturn (*memory)(NvmlDevice, NvmlMemory*) = nullptr;
  NvmlReturn (*utilization)(NvmlDevice, NvmlUtilization*) = nullptr;
  NvmlReturn (*uuid)(NvmlDevice, char*, unsigned) = nullptr;
  std::vector<std::pair<NvmlDevice, std::string>> devices;  // handle, UUID

  ~Nvml() {
    if (shutdown) shutdown();
    if (lib) ::dlclose(lib);
  }
};

GpuSampler::GpuSampler(Metrics& metrics, std::chrono::milliseconds interval, const std::string& library)
    : metrics_(metrics), interval_(interval) {
  auto nvml = std::make_unique<Nvml>();
  nvml->lib = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!nvml->lib) {
    const char* err = ::dlerror();
    reason_ = "cannot load " + library + (err ? std::string(": ") + err : std::string());
    return;
  }
  const auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(::dlsym(nvml->lib, name));
    return fn != nullptr;
  };
  if (!sym(nvml->init, "nvmlInit_v2") || !sym(nvml->shutdown, "nvmlShutdown") ||
      !sym(nvml->count, "nvmlDeviceGetCount_v2") || !sym(nvml->handle, "nvmlDeviceGetHandleByIndex_v2") ||
      !sym(nvml->memory, "nvmlDeviceGetMemoryInfo") ||
      !sym(nvml->utilization, "nvmlDeviceGetUtilizationRates") || !sym(nvml->uuid, "nvmlDeviceGetUUID")) {
    nvml->shutdown = nullptr;
    reason_ = library + " lacks an NVML function inferq uses";
    return;
  }
  if (nvml->init() != kNvmlSuccess) {
    nvml->shutdown = nullptr;
    reason_ = "nvmlInit failed";
    return;
  }
  unsigned n = 0;
  if (nvml->count(&n) != kNvmlSuccess || n == 0) {
    reason_ = "NVML reports no GPU";
    return;
  }
  for (unsigned i = 0; i < n; ++i) {
    NvmlDevice d = nullptr;
    char uuid[kUuidSize] = {};
    if (nvml->handle(i, &d) != kNvmlSuccess) continue;
    if (nvml->uuid(d, uuid, kUuidSize) != kNvmlSuccess) uuid[0] = '\0';
    nvml->devices.emplace_back(d, uuid);
  }
  if (nvml->devices.empty()) {
    reason_ = "NVML returned no GPU handle";
    return;
  }
  nvml_ = std::move(nvml);
  thread_.start([this] {
    sample();
    return interval_;
  });
}

GpuSampler::~GpuSampler() { stop(); }

void GpuSampler::stop() noexcept { thread_.stop(); }

void GpuSampler::sample() {
  std::vector<GpuSample> samples;
  for (std::size_t i = 0; i < nvml_->devices.size(); ++i) {
    const auto& [device, uuid] = nvml_->devices[i];
    GpuSample s;
    s.index = static_cast<int>(i);
    s.uuid = uuid;
    NvmlMemory mem{};
    if (nvml_->memory(device, &mem) == kNvmlSuccess) {
      s.memory_used_bytes = static_cast<double>(mem.used);
      s.memory_total_bytes = static_cast<double>(mem.total);
    }
    NvmlUtilization util{};
    if (nvml_->utilization(device, &util) == kNvmlSuccess) s.utilization_ratio = util.gpu / 100.0;
    samples.push_back(std::move(s));
  }
  metrics_.set_gpu_samples(samples);
}

}  // namespace inferq::metrics
