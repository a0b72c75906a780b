#include "executor/model_handler.hpp"

#include <dlfcn.h>
#include <sys/stat.h>

#include <torch/cuda.h>
#include <torch/script.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <utility>
#include <vector>

#include "executor/fault_policy.hpp"
#include "executor/model_plugin.hpp"
#include "executor/payload.hpp"

namespace inferq::executor {
namespace {

using protocol::JobOutput;
using protocol::Outcome;

// Warm-up inputs give variable-length dimensions this length.
constexpr std::int64_t kWarmupLength = 16;

at::ScalarType scalar_type(DataType type) {
  switch (type) {
    case DataType::kFP32:
      return at::kFloat;
    case DataType::kFP16:
      return at::kHalf;
    case DataType::kFP64:
      return at::kDouble;
    case DataType::kINT64:
      return at::kLong;
    case DataType::kINT32:
      return at::kInt;
    case DataType::kINT8:
      return at::kChar;
    case DataType::kUINT8:
      return at::kByte;
    case DataType::kBOOL:
      return at::kBool;
  }
  return at::kFloat;
}

// The datatype a result tensor is written as; other types are converted.
std::pair<DataType, at::ScalarType> result_type(at::ScalarType t) {
  switch (t) {
    case at::kHalf:
      return {DataType::kFP16, t};
    case at::kDouble:
      return {DataType::kFP64, t};
    case at::kLong:
      return {DataType::kINT64, t};
    case at::kInt:
      return {DataType::kINT32, t};
    case at::kChar:
      return {DataType::kINT8, t};
    case at::kByte:
      return {DataType::kUINT8, t};
    case at::kBool:
      return {DataType::kBOOL, t};
    default:
      return {DataType::kFP32, at::kFloat};
  }
}

// c10::Error's what() carries a C++ backtrace; the first line is the message.
std::string message_of(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

class ModelHandler final : public Handler {
 public:
  explicit ModelHandler(const config::QueueSettings& queue)
      : name_(queue.name), binary_outputs_(queue.binary_data_output) {
    const std::string where = "queue \"" + queue.name + "\": ";
    for (const config::ModelInput& in : queue.inputs) {
      InputSpec spec;
      spec.name = in.name;
      spec.datatype = *parse_datatype(in.datatype);  // checked by the config
      spec.shape = in.shape;
      spec.pad = in.pad;
      spec.allow_non_finite = in.allow_non_finite;
      specs_.push_back(std::move(spec));
    }
    for (const config::ModelOutput& out : queue.outputs) outputs_.push_back(out.name);

    device_ = pick_device(queue.device, where);
    if (device_.is_cuda()) set_cuda_device(device_.index());
    for (std::size_t i = 0; i < queue.extra_libraries.size(); ++i) {
      const std::string& lib = queue.extra_libraries[i];
      // RTLD_GLOBAL: the ops a library registers must be visible to the model's loader.
      if (::dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
        throw StartupError(where + "extra_libraries[" + std::to_string(i) + "]: cannot load " + lib + ": " +
                           ::dlerror());
      }
    }
    struct stat st {};
    if (::stat(queue.model.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      throw StartupError(where + "model: no such file: " + queue.model);
    }
    try {
      module_ = torch::jit::load(queue.model, device_);
      module_.eval();
    } catch (const std::exception& e) {
      throw StartupError(where + "model: cannot load " + queue.model +
                         " as TorchScript: " + first_line(message_of(e)));
    }
    check_forward_arguments(queue.model, where);
    warm_up_or_explain(std::max(1, queue.batch.max_jobs), where);
  }

  JobOutput run_job(const protocol::JobInput& job) override {
    protocol::RunUnit unit;
    unit.jobs.push_back(job);
    return std::move(run_unit(std::move(unit)).jobs.front());
  }

  protocol::UnitResult run_unit(protocol::RunUnit unit) override {
    const std::size_t n = unit.jobs.size();
    protocol::UnitResult result;
    result.unit_id = unit.unit_id;
    result.jobs.resize(n);
    timing_ = {};
    const auto decode_started = Clock::now();
    std::vector<std::vector<DecodedTensor>> decoded;
    std::vector<std::size_t> valid;  // indexes into unit.jobs, in order
    decoded.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      result.jobs[i].job_id = unit.jobs[i].job_id;
      DecodedPayload p = decode_payload(unit.jobs[i].payload, specs_, unit.jobs[i].payload_binary);
      if (!p.ok()) {
        result.jobs[i].outcome = Outcome::kPermanent;
        result.jobs[i].body = std::move(p.error);
        continue;
      }
      valid.push_back(i);
      decoded.push_back(std::move(p.tensors));
      std::string().swap(unit.jobs[i].payload);  // free them early
      std::string().swap(unit.jobs[i].payload_binary);
    }
    timing_.decode_ns += elapsed_ns(decode_started);
    if (valid.empty()) {
      result.timing = timing_;
      return result;
    }

    // One forward over valid jobs [begin, end). The fault policy splits the
    // range on out-of-memory and ends the executor on a sticky CUDA error;
    // synchronizing here blames an asynchronous GPU error on this batch.
    const auto forward = [&](std::size_t begin, std::size_t end) {
      std::vector<JobOutput> outs = run_batch(decoded, begin, end);
      synchronize_device();
      return outs;
    };
    std::vector<JobOutput> outs = run_with_fault_policy(valid.size(), forward, release_cached_memory);
    for (std::size_t k = 0; k < valid.size(); ++k) {
      outs[k].job_id = unit.jobs[valid[k]].job_id;
      result.jobs[valid[k]] = std::move(outs[k]);
    }
    result.timing = timing_;
    return result;
  }

 private:
  // The model's outputs do not match `outputs:` (found by the warm-up).
  struct OutputMismatch : std::runtime_error {
    using std::runtime_error::runtime_error;
  };

  static torch::Device pick_device(const std::string& device, const std::string& where) {
    if (device == "cpu") return torch::kCPU;
    if (device == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::kCPU;
    const int index = std::stoi(device.substr(5));  // "cuda:N", checked by the config
    if (!torch::cuda::is_available()) {
      throw StartupError(
          where + "device: " + device +
          " needs CUDA, but this libtorch has no CUDA support or sees no GPU (use cpu or auto)");
    }
    const auto count = static_cast<int>(torch::cuda::device_count());
    if (index >= count) {
      throw StartupError(where + "device: " + device + " does not exist (" + std::to_string(count) +
                         " GPU(s))");
    }
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }

  // forward() must take one tensor per declared input: as many as are
  // declared, at least its arguments without a default and at most all.
  void check_forward_arguments(const std::string& path, const std::string& where) const {
    std::vector<c10::Argument> args;
    try {
      args = module_.get_method("forward").function().getSchema().arguments();
    } catch (const std::exception& e) {
      throw StartupError(where + "model: " + path + " has no forward method: " + first_line(message_of(e)));
    }
    if (!args.empty()) args.erase(args.begin());  // self
    std::size_t required = 0;
    for (const c10::Argument& a : args) required += a.default_value() ? 0 : 1;
    if (specs_.size() < required || specs_.size() > args.size()) {
      std::string names;
      for (const InputSpec& s : specs_) names += (names.empty() ? "" : ", ") + s.name;
      const std::string takes = required == args.size()
                                    ? std::to_string(args.size())
                                    : std::to_string(required) + " to " + std::to_string(args.size());
      throw StartupError(where + "inputs: declares " + std::to_string(specs_.size()) + " input(s) (" + names +
                         ") but the model's forward() takes " + takes);
    }
    for (std::size_t i = 0; i < specs_.size(); ++i) {
      if (!c10::TensorType::get()->isSubtypeOf(*args[i].type())) {
        throw StartupError(where + "inputs[" + std::to_string(i) + "] (" + specs_[i].name +
                           "): forward() takes argument \"" + args[i].name() + "\" as " +
                           args[i].type()->annotation_str() +
                           ", but inferq passes one tensor per input (make it a Tensor argument)");
      }
    }
  }

  // Warms up at batch 1, then at `max_jobs` (the extremes a unit can have),
  // which also checks the outputs against their declaration; a failure says
  // what to change, telling a model that only runs at batch 1 (a trace that
  // kept its example's batch size) from inputs it does not accept.
  void warm_up_or_explain(int max_jobs, const std::string& where) {
    try {
      warm_up(1);
    } catch (const OutputMismatch& e) {
      throw StartupError(where + "outputs: " + e.what());
    } catch (const std::exception& e) {
      throw StartupError(where + "model: warm-up at batch 1 failed: " + first_line(message_of(e)) +
                         " (check that inputs: declares the datatype and the shape without the batch "
                         "dimension that forward() expects; a traced model takes only the dtypes it was "
                         "traced with)");
    }
    if (max_jobs == 1) return;
    std::string error;
    try {
      warm_up(static_cast<std::size_t>(max_jobs));
    } catch (const OutputMismatch& e) {
      error = e.what();
    } catch (const std::exception& e) {
      error = first_line(message_of(e));
    }
    if (error.empty()) return;
    throw StartupError(where + "batch: the model runs at batch 1 but fails at batch " +
                       std::to_string(max_jobs) + " (batch.max_jobs): " + error +
                       ". A model made with torch.jit.trace keeps the sizes its Python code read as numbers "
                       "(e.g. reshape(1, -1)); use x.size(0) or torch.jit.script so the batch dimension "
                       "stays dynamic, or set batch.max_jobs: 1");
  }

  // Stacks jobs [begin, end) of `decoded` into one batch per input, padding
  // variable-length dimensions to the longest.
  std::vector<c10::IValue> make_batch(const std::vector<std::vector<DecodedTensor>>& decoded,
                                      std::size_t begin, std::size_t end) const {
    const auto m = static_cast<std::int64_t>(end - begin);
    std::vector<c10::IValue> args;
    args.reserve(specs_.size());
    for (std::size_t k = 0; k < specs_.size(); ++k) {
      const InputSpec& spec = specs_[k];
      std::vector<std::int64_t> dims = decoded[begin][k].shape;
      for (std::size_t j = begin + 1; j < end; ++j) {
        const auto& shape = decoded[j][k].shape;
        for (std::size_t d = 0; d < dims.size(); ++d) dims[d] = std::max(dims[d], shape[d]);
      }
      std::vector<std::int64_t> batch_dims{m};
      batch_dims.insert(batch_dims.end(), dims.begin(), dims.end());
      const auto options = at::TensorOptions().dtype(scalar_type(spec.datatype));
      bool padded = false;
      for (std::size_t j = begin; j < end && !padded; ++j) padded = decoded[j][k].shape != dims;
      at::Tensor batch = padded ? at::full(batch_dims, spec.pad, options) : at::empty(batch_dims, options);
      auto* base = static_cast<unsigned char*>(batch.data_ptr());
      const std::size_t row = static_cast<std::size_t>(batch.numel() / m) * datatype_size(spec.datatype);
      for (std::size_t j = begin; j < end; ++j) {
        const DecodedTensor& t = decoded[j][k];
        const auto i = static_cast<std::int64_t>(j - begin);
        if (t.shape == dims) {
          std::memcpy(base + static_cast<std::size_t>(i) * row, t.bytes.data(), row);
          continue;
        }
        at::Tensor dst = batch[i];
        for (std::size_t d = 0; d < dims.size(); ++d)
          dst = dst.narrow(static_cast<std::int64_t>(d), 0, t.shape[d]);
        dst.copy_(at::from_blob(const_cast<unsigned char*>(t.bytes.data()), t.shape, options));
      }
      args.emplace_back(device_.is_cpu() ? std::move(batch) : batch.to(device_));
    }
    return args;
  }

  // The model's result as one tensor per declared output, in order.
  std::vector<at::Tensor> map_outputs(const c10::IValue& out, std::int64_t m) const {
    std::vector<at::Tensor> tensors;
    const auto want = [&](std::size_t got, const char* what) {
      if (got != outputs_.size()) {
        throw OutputMismatch("the model returns a " + std::string(what) + " of " + std::to_string(got) +
                             " but outputs declares " + std::to_string(outputs_.size()));
      }
    };
    const auto tensor_of = [&](const c10::IValue& v, const std::string& name) {
      if (!v.isTensor())
        throw OutputMismatch("output \"" + name + "\" is a " + v.tagKind() + ", not a tensor");
      return v.toTensor();
    };
    if (out.isTensor()) {
      want(1, "single tensor");
      tensors.push_back(out.toTensor());
    } else if (out.isTuple()) {
      const auto& elements = out.toTuple()->elements();
      want(elements.size(), "tuple");
      for (std::size_t i = 0; i < elements.size(); ++i)
        tensors.push_back(tensor_of(elements[i], outputs_[i]));
    } else if (out.isList()) {
      const auto list = out.toList();
      want(list.size(), "list");
      for (std::size_t i = 0; i < list.size(); ++i) tensors.push_back(tensor_of(list.get(i), outputs_[i]));
    } else if (out.isGenericDict()) {
      const auto dict = out.toGenericDict();
      for (const std::string& name : outputs_) {
        const auto it = dict.find(c10::IValue(name));
        if (it == dict.end()) throw OutputMismatch("the model's dict has no key \"" + name + "\"");
        tensors.push_back(tensor_of(it->value(), name));
      }
    } else {
      throw OutputMismatch("the model returns a " + out.tagKind() +
                           ", expected a tensor, tuple, list or dict");
    }
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].dim() < 1 || tensors[i].size(0) != m) {
        throw OutputMismatch("output \"" + outputs_[i] + "\" has shape " + c10::str(tensors[i].sizes()) +
                             ", expected a first (batch) dimension of " + std::to_string(m));
      }
    }
    return tensors;
  }

  // One forward pass over jobs [begin, end); one output per job (job ids
  // left for the caller). Throws what the model throws.
  std::vector<JobOutput> run_batch(const std::vector<std::vector<DecodedTensor>>& decoded, std::size_t begin,
                                   std::size_t end) {
    const auto m = static_cast<std::int64_t>(end - begin);
    std::vector<at::Tensor> results;
    {
      c10::InferenceMode guard;
      auto started = Clock::now();
      std::vector<c10::IValue> args = make_batch(decoded, begin, end);
      timing_.decode_ns += elapsed_ns(started);
      started = Clock::now();
      const c10::IValue out = module_.forward(std::move(args));
      results = map_outputs(out, m);
      // The copy to the host waits for the device: the forward's whole time.
      for (at::Tensor& t : results) {
        const auto type = result_type(t.scalar_type());
        t = t.to(at::kCPU, type.second).contiguous();
      }
      timing_.forward_ns += elapsed_ns(started);
    }
    const auto encode_started = Clock::now();
    std::vector<JobOutput> outs(static_cast<std::size_t>(m));
    std::vector<OutputView> views(results.size());
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::size_t k = 0; k < results.size(); ++k) {
        const at::Tensor& t = results[k];
        OutputView& v = views[k];
        v.name = outputs_[k];
        v.datatype = result_type(t.scalar_type()).first;
        v.shape.assign(t.sizes().begin() + 1, t.sizes().end());
        const std::size_t row = static_cast<std::size_t>(t.numel() / m) * t.element_size();
        v.data = static_cast<const unsigned char*>(t.data_ptr()) + static_cast<std::size_t>(i) * row;
      }
      JobOutput& out = outs[static_cast<std::size_t>(i)];
      encode_result(out.body, name_, views, binary_outputs_ ? &out.body_binary : nullptr);
    }
    timing_.encode_ns += elapsed_ns(encode_started);
    return outs;
  }

  void warm_up(std::size_t batch) {
    std::vector<std::vector<DecodedTensor>> decoded(batch);
    for (auto& job : decoded) {
      for (const InputSpec& spec : specs_) {
        DecodedTensor t;
        std::size_t count = 1;
        for (const std::int64_t d : spec.shape) {
          t.shape.push_back(d < 0 ? kWarmupLength : d);
          count *= static_cast<std::size_t>(t.shape.back());
        }
        // Ones: a valid value for every type (a token id, a feature, true).
        const at::Tensor one = at::ones({1}, at::TensorOptions().dtype(scalar_type(spec.datatype)));
        const std::size_t size = datatype_size(spec.datatype);
        t.bytes.resize(count * size);
        for (std::size_t e = 0; e < count; ++e) std::memcpy(t.bytes.data() + e * size, one.data_ptr(), size);
        job.push_back(std::move(t));
      }
    }
    // Twice: the profiling executor optimises on the second run.
    for (int round = 0; round < 2; ++round) run_batch(decoded, 0, batch);
  }

  using Clock = std::chrono::steady_clock;
  static std::uint64_t elapsed_ns(Clock::time_point since) {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - since).count());
  }

  // The current unit's stages, added up over its forwards (a split batch
  // runs several).
  protocol::UnitTiming timing_;
  std::string name_;
  bool binary_outputs_ = false;  // config binary_data_output
  std::vector<InputSpec> specs_;
  std::vector<std::string> outputs_;
  torch::Device device_{torch::kCPU};
  torch::jit::Module module_;
};

}  // namespace

void set_torch_threads(int threads) {
  at::set_num_threads(std::max(1, threads));
  at::set_num_interop_threads(1);
}

std::unique_ptr<Handler> make_model_handler(const config::QueueSettings& queue) {
  return std::make_unique<ModelHandler>(queue);
}

}  // namespace inferq::executor

extern "C" const inferq::executor::ModelPlugin* inferq_model_plugin_v1() {
  using namespace inferq::executor;
  static const ModelPlugin plugin{
      &set_torch_threads,
      [](const inferq::config::QueueSettings& queue) -> Handler* {
        return make_model_handler(queue).release();
      },
      &make_example_models,
  };
  return &plugin;
}
