#include "executor/model_plugin.hpp"

#include <dlfcn.h>
#include <limits.h>
#include <unistd.h>

#include <mutex>
#include <stdexcept>

namespace inferq::executor {
namespace {

constexpr const char* kLibrary = "libinferq_model.so";

std::string executable_dir() {
  char path[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (n <= 0) return ".";
  std::string p(path, static_cast<std::size_t>(n));
  const std::size_t slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

}  // namespace

const ModelPlugin& model_plugin() {
  static const ModelPlugin* plugin = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string path = executable_dir() + "/" + kLibrary;
    // Never closed: the handler it makes lives as long as the process.
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) throw std::runtime_error(std::string("cannot load ") + path + ": " + ::dlerror());
    auto* entry = reinterpret_cast<const ModelPlugin* (*)()>(::dlsym(handle, "inferq_model_plugin_v1"));
    if (entry == nullptr) throw std::runtime_error(path + " has no inferq_model_plugin_v1: " + ::dlerror());
    plugin = entry();
  });
  return *plugin;
}

}  // namespace inferq::executor
