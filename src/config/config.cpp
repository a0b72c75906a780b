#include "config/settings.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "util/duration.hpp"
#include "util/fd.hpp"
#include "util/strings.hpp"

namespace inferq::config {
namespace {

constexpr const char* kDatabaseUrlEnv = "INFERQ_DATABASE_URL";
constexpr const char* kDefaultsSource = "<defaults>";

constexpr std::array<std::string_view, 5> kLogLevels{"trace", "debug", "info", "warn", "error"};
constexpr std::array<std::string_view, 2> kLogFormats{"text", "json"};

// What a queue can run. Issue 3 adds "model:<path>" handlers: give them a
// branch of their own in handler_problem() beside the builtin one.
constexpr std::string_view kBuiltinPrefix = "builtin:";
constexpr std::array<std::string_view, 4> kBuiltinHandlers{"builtin:echo", "builtin:sleep", "builtin:fail",
                                                           "builtin:crash"};

constexpr int kMaxInstances = 256;
constexpr int kMaxBatchJobs = 4096;
constexpr int kMaxAttempts = 1000;

// Where a value sits in the document: what an error message names.
struct At {
  const std::string* source;
  std::string path;  // "queues[0].deadline"; empty at the top level
  YAML::Mark mark;

  At child(const std::string& key, const YAML::Mark& child_mark) const {
    return At{source, path.empty() ? key : path + "." + key, child_mark};
  }
};

// config <source>:<line>: <path>: <what>
[[noreturn]] void fail(const At& at, const std::string& what) {
  std::string message = "config " + *at.source;
  if (!at.mark.is_null()) message += ":" + std::to_string(at.mark.line + 1);
  message += ": ";
  if (!at.path.empty()) message += at.path + ": ";
  throw ConfigError(message + what);
}

std::string quoted(std::string_view text) { return "\"" + std::string(text) + "\""; }

// How a value that was not what we wanted looks, for "expected X, got Y".
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return quoted(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "nothing";
  }
}

// A duration that must be in order with another (stale_after vs
// heartbeat_interval); mark is null when the file left it at its default.
struct Bound {
  std::string_view key;
  Duration value;
  YAML::Mark mark = YAML::Mark::null_mark();
};

// One known key of a map and what to do with its value.
struct Field {
  std::string_view key;
  std::function<void(const YAML::Node& value, const At& at)> read;
};

// Reads a map whose keys must all be among `fields`. Unless `required`, a
// null map is accepted, and a null value always is; both leave the defaults
// in place: "section:" with every key commented out is a normal thing to write.
void read_map(const YAML::Node& node, const At& at, const std::vector<Field>& fields, bool required = false) {
  if (node.IsNull() && !required) return;
  std::vector<std::string_view> keys;
  keys.reserve(fields.size());
  for (const Field& field : fields) keys.push_back(field.key);
  if (!node.IsMap()) fail(at, "expected a map with keys " + util::join(keys) + ", got " + describe(node));

  std::set<std::string> seen;
  for (const auto& entry : node) {
    const YAML::Node& key = entry.first;
    const YAML::Node& value = entry.second;
    if (!key.IsScalar())
      fail(At{at.source, at.path, key.Mark()}, "expected a key name, got " + describe(key));
    const std::string& name = key.Scalar();
    const At key_at = at.child(name, key.Mark());
    const auto field =
        std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.key == name; });
    if (field == fields.end()) fail(key_at, "unknown key (expected one of " + util::join(keys) + ")");
    // yaml-cpp keeps both copies of a repeated key; which one wins would be
    // an accident, so refuse.
    if (!seen.insert(name).second) fail(key_at, "key given twice");
    if (value.IsNull()) continue;
    field->read(value, at.child(name, value.Mark().is_null() ? key.Mark() : value.Mark()));
  }
}

const std::string& read_scalar(const YAML::Node& node, const At& at, std::string_view expected) {
  if (!node.IsScalar()) fail(at, "expected " + std::string(expected) + ", got " + describe(node));
  return node.Scalar();
}

std::string read_string(const YAML::Node& node, const At& at) { return read_scalar(node, at, "a string"); }

int read_int(const YAML::Node& node, const At& at, int min, int max) {
  const std::string& text = read_scalar(node, at, "an integer");
  int value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec == std::errc::result_out_of_range ||
      (ec == std::errc() && ptr == end && (value < min || value > max))) {
    fail(at, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + text);
  }
  if (ec != std::errc() || ptr != end) fail(at, "expected an integer, got " + quoted(text));
  return value;
}

Duration read_duration(const YAML::Node& node, const At& at, bool allow_zero = false) {
  const std::string& text = read_scalar(node, at, "a duration like 250ms, 30s or 5m");
  const std::optional<Duration> value = util::parse_duration(text);
  if (!value) fail(at, "expected a duration like 250ms, 30s or 5m, got " + quoted(text));
  if (value->count() <= 0 && !allow_zero) fail(at, "must be greater than 0, got " + text);
  return *value;
}

bool read_bool(const YAML::Node& node, const At& at) {
  const std::string& text = read_scalar(node, at, "true or false");
  if (text == "true") return true;
  if (text == "false") return false;
  fail(at, "expected true or false, got " + quoted(text));
}

double read_number(const YAML::Node& node, const At& at) {
  const std::string& text = read_scalar(node, at, "a number");
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) fail(at, "expected a number, got " + quoted(text));
  return value;
}

// A YAML list, each item read by `item(node, at_of_item)`.
void read_list(const YAML::Node& node, const At& at, std::string_view what,
               const std::function<void(const YAML::Node&, const At&)>& item) {
  if (!node.IsSequence()) fail(at, "expected a list of " + std::string(what) + ", got " + describe(node));
  std::size_t i = 0;
  for (const YAML::Node& element : node) {
    const At element_at{at.source, at.path + "[" + std::to_string(i++) + "]",
                        element.Mark().is_null() ? at.mark : element.Mark()};
    item(element, element_at);
  }
}

bool valid_device(std::string_view device) {
  if (device == "auto" || device == "cpu") return true;
  if (device.substr(0, 5) != "cuda:" || device.size() == 5 || device.size() > 8) return false;
  return std::all_of(device.begin() + 5, device.end(), [](char c) { return c >= '0' && c <= '9'; });
}

ModelInput read_model_input(const YAML::Node& node, const At& at) {
  ModelInput input;
  bool has_name = false;
  bool has_datatype = false;
  bool has_shape = false;
  read_map(node, at,
           {
               {"name",
                [&](auto& v, auto& a) {
                  input.name = read_string(v, a);
                  if (input.name.empty()) fail(a, "must not be empty");
                  has_name = true;
                }},
               {"datatype",
                [&](auto& v, auto& a) {
                  input.datatype = read_string(v, a);
                  const auto& types = model_datatypes();
                  if (std::find(types.begin(), types.end(), input.datatype) == types.end()) {
                    fail(a, "expected one of " + util::join(types) + ", got " + quoted(input.datatype));
                  }
                  has_datatype = true;
                }},
               {"shape",
                [&](auto& v, auto& a) {
                  read_list(v, a, "dimensions", [&](const YAML::Node& d, const At& da) {
                    const int dim = read_int(d, da, -1, 1 << 30);
                    if (dim == 0) fail(da, "a dimension must be -1 (variable) or at least 1, got 0");
                    input.shape.push_back(dim);
                  });
                  has_shape = true;
                }},
               {"pad", [&](auto& v, auto& a) { input.pad = read_number(v, a); }},
               {"allow_non_finite", [&](auto& v, auto& a) { input.allow_non_finite = read_bool(v, a); }},
           },
           /*required=*/true);
  if (!has_name) fail(at, "missing required key name");
  if (!has_datatype) fail(at, "missing required key datatype");
  if (!has_shape) fail(at, "missing required key shape (the dimensions after the batch one; -1 = variable)");
  return input;
}

template <std::size_t N>
std::string read_choice(const YAML::Node& node, const At& at,
                        const std::array<std::string_view, N>& choices) {
  const std::string expected = "one of " + util::join(choices);
  const std::string& text = read_scalar(node, at, expected);
  if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
    fail(at, "expected " + expected + ", got " + quoted(text));
  }
  return text;
}

// "HOST:PORT"; an IPv6 host is written in brackets: "[::1]:9847".
std::string read_listen(const YAML::Node& node, const At& at) {
  const std::string& text = read_scalar(node, at, "HOST:PORT");
  const std::size_t colon = text.rfind(':');
  const std::string_view host = std::string_view(text).substr(0, colon == std::string::npos ? 0 : colon);
  const bool host_ok = !host.empty() && (host.front() == '[' ? host.size() > 2 && host.back() == ']'
                                                             : host.find(':') == std::string_view::npos);
  const std::string_view port_text =
      colon == std::string::npos ? std::string_view() : std::string_view(text).substr(colon + 1);
  int port = 0;
  const char* end = port_text.data() + port_text.size();
  const auto [ptr, ec] = std::from_chars(port_text.data(), end, port);
  const bool port_is_number = !port_text.empty() && ptr == end && ec != std::errc::invalid_argument;
  if (!host_ok || !port_is_number) fail(at, "expected HOST:PORT like 127.0.0.1:9847, got " + quoted(text));
  // Port 0: an ephemeral port, logged at start-up (tests run many daemons).
  if (ec != std::errc() || port < 0 || port > 65535) {
    fail(at, "port must be between 0 (any free port) and 65535, got " + std::string(port_text));
  }
  return text;
}

// Empty when `handler` names something a queue can run, else why not.
std::optional<std::string> handler_problem(std::string_view handler) {
  if (handler.substr(0, kBuiltinPrefix.size()) == kBuiltinPrefix) {
    if (std::find(kBuiltinHandlers.begin(), kBuiltinHandlers.end(), handler) != kBuiltinHandlers.end()) {
      return std::nullopt;
    }
    return "unknown builtin handler " + quoted(handler) + " (expected one of " +
           util::join(kBuiltinHandlers) + ")";
  }
  return "expected one of " + util::join(kBuiltinHandlers) + ", got " + quoted(handler);
}

bool valid_queue_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// An SQL identifier, or schema.identifier, that needs no quoting: a letter
// or '_', then letters, digits and '_'.
bool valid_sink_name(std::string_view name) {
  const auto identifier = [](std::string_view part) {
    const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
    return !part.empty() && letter(part.front()) &&
           std::all_of(part.begin(), part.end(), [&](char c) { return letter(c) || (c >= '0' && c <= '9'); });
  };
  const auto dot = name.find('.');
  if (dot == std::string_view::npos) return identifier(name);
  return identifier(name.substr(0, dot)) && identifier(name.substr(dot + 1));
}

// Fails unless low < high (strict) or low <= high. The error points at the
// value the file set, `high` when it set both, since that is usually the fix.
void check_order(const At& parent, const Bound& low, const Bound& high, bool strict, std::string_view why) {
  if (strict ? low.value < high.value : low.value <= high.value) return;
  const bool blame_high = !high.mark.is_null() || low.mark.is_null();
  const Bound& blamed = blame_high ? high : low;
  const Bound& other = blame_high ? low : high;
  const std::string relation =
      blame_high ? (strict ? "greater than " : "at least ") : (strict ? "less than " : "at most ");
  fail(parent.child(std::string(blamed.key), blamed.mark),
       "must be " + relation + std::string(other.key) + " (" + util::format_duration(other.value) +
           "), got " + util::format_duration(blamed.value) + std::string(why));
}

void read_worker(const YAML::Node& node, const At& at, WorkerSettings& worker) {
  Bound heartbeat{"heartbeat_interval", {}};
  Bound stale{"stale_after", {}};
  read_map(node, at,
           {
               {"poll_interval", [&](auto& v, auto& a) { worker.poll_interval = read_duration(v, a); }},
               {"heartbeat_interval",
                [&](auto& v, auto& a) {
                  worker.heartbeat_interval = read_duration(v, a);
                  heartbeat.mark = a.mark;
                }},
               {"stale_after",
                [&](auto& v, auto& a) {
                  worker.stale_after = read_duration(v, a);
                  stale.mark = a.mark;
                }},
               {"shutdown_grace", [&](auto& v, auto& a) { worker.shutdown_grace = read_duration(v, a); }},
               {"executor_path", [&](auto& v, auto& a) { worker.executor_path = read_string(v, a); }},
               {"vacuum_dead_rows",
                [&](auto& v, auto& a) { worker.vacuum_dead_rows = read_int(v, a, 0, 1'000'000'000); }},
           });
  heartbeat.value = worker.heartbeat_interval;
  stale.value = worker.stale_after;
  check_order(
      at, heartbeat, stale, /*strict=*/true,
      " (a lease is renewed every heartbeat_interval, so a shorter stale_after would reap live leases)");
}

void read_retry(const YAML::Node& node, const At& at, RetrySettings& retry) {
  Bound backoff{"backoff", {}};
  Bound max_backoff{"max_backoff", {}};
  read_map(
      node, at,
      {
          {"max_attempts", [&](auto& v, auto& a) { retry.max_attempts = read_int(v, a, 1, kMaxAttempts); }},
          {"backoff",
           [&](auto& v, auto& a) {
             retry.backoff = read_duration(v, a);
             backoff.mark = a.mark;
           }},
          {"max_backoff",
           [&](auto& v, auto& a) {
             retry.max_backoff = read_duration(v, a);
             max_backoff.mark = a.mark;
           }},
      });
  backoff.value = retry.backoff;
  max_backoff.value = retry.max_backoff;
  check_order(at, backoff, max_backoff, /*strict=*/false, "");
}

// The retention keys a map sets; unset ones are inherited.
struct RetentionKeys {
  std::optional<Duration> succeeded, cancelled, dead;

  void apply_to(RetentionSettings& r) const {
    if (succeeded) r.succeeded = *succeeded;
    if (cancelled) r.cancelled = *cancelled;
    if (dead) r.dead = *dead;
  }
};

RetentionKeys read_retention(const YAML::Node& node, const At& at) {
  RetentionKeys keys;
  const auto key = [](std::optional<Duration>& out) {
    // A bare 0 is clear here: for ever.
    return [&out](auto& v, auto& a) {
      out = v.IsScalar() && v.Scalar() == "0" ? Duration(0) : read_duration(v, a, /*allow_zero=*/true);
    };
  };
  read_map(node, at,
           {
               {"succeeded", key(keys.succeeded)},
               {"cancelled", key(keys.cancelled)},
               {"dead", key(keys.dead)},
           });
  return keys;
}

// Reads one queue; `name_mark` receives where its name is, for the
// duplicate check in read_queues, and `retention` its retention keys.
QueueSettings read_queue(const YAML::Node& node, const At& at, YAML::Mark& name_mark,
                         RetentionKeys& retention) {
  QueueSettings queue;
  bool has_name = false;
  bool has_handler = false;
  YAML::Mark handler_mark = YAML::Mark::null_mark();
  // Keys only a model queue may set, and where, for the error on a handler queue.
  std::vector<std::pair<std::string, YAML::Mark>> model_keys;
  const auto model_key = [&](const At& a) {
    model_keys.emplace_back(a.path.substr(a.path.rfind('.') + 1), a.mark);
  };
  read_map(
      node, at,
      {
          {"name",
           [&](auto& v, auto& a) {
             queue.name = read_string(v, a);
             if (!valid_queue_name(queue.name)) {
               fail(a, "expected a name of letters, digits, '_', '.' and '-', got " + quoted(queue.name));
             }
             has_name = true;
             name_mark = a.mark;
           }},
          {"handler",
           [&](auto& v, auto& a) {
             queue.handler = read_string(v, a);
             if (auto problem = handler_problem(queue.handler)) fail(a, *problem);
             has_handler = true;
             handler_mark = a.mark;
           }},
          {"model",
           [&](auto& v, auto& a) {
             queue.model = read_string(v, a);
             if (queue.model.empty()) fail(a, "must not be empty (a TorchScript file, e.g. model.pt)");
           }},
          {"device",
           [&](auto& v, auto& a) {
             queue.device = read_string(v, a);
             if (!valid_device(queue.device))
               fail(a, "expected auto, cpu or cuda:N, got " + quoted(queue.device));
             model_key(a);
           }},
          {"threads",
           [&](auto& v, auto& a) {
             queue.threads = read_int(v, a, 0, 1024);
             model_key(a);
           }},
          {"inputs",
           [&](auto& v, auto& a) {
             read_list(v, a, "inputs", [&](const YAML::Node& n, const At& na) {
               ModelInput input = read_model_input(n, na);
               for (const ModelInput& other : queue.inputs) {
                 if (other.name == input.name) fail(na, "duplicate input name " + quoted(input.name));
               }
               queue.inputs.push_back(std::move(input));
             });
             model_key(a);
           }},
          {"outputs",
           [&](auto& v, auto& a) {
             read_list(v, a, "outputs", [&](const YAML::Node& n, const At& na) {
               ModelOutput output;
               read_map(n, na, {{"name", [&](auto& v2, auto& a2) { output.name = read_string(v2, a2); }}},
                        /*required=*/true);
               if (output.name.empty()) fail(na, "missing required key name");
               for (const ModelOutput& other : queue.outputs) {
                 if (other.name == output.name) fail(na, "duplicate output name " + quoted(output.name));
               }
               queue.outputs.push_back(std::move(output));
             });
             model_key(a);
           }},
          {"binary_data_output",
           [&](auto& v, auto& a) {
             queue.binary_data_output = read_bool(v, a);
             model_key(a);
           }},
          {"extra_libraries",
           [&](auto& v, auto& a) {
             read_list(v, a, "shared library paths", [&](const YAML::Node& n, const At& na) {
               queue.extra_libraries.push_back(read_string(n, na));
             });
             model_key(a);
           }},
          {"idle_exit_after",
           [&](auto& v, auto& a) {
             queue.idle_exit_after = read_duration(v, a, /*allow_zero=*/true);
             model_key(a);
           }},
          {"instances", [&](auto& v, auto& a) { queue.instances = read_int(v, a, 1, kMaxInstances); }},
          {"batch",
           [&](auto& v, auto& a) {
             read_map(
                 v, a,
                 {{"max_bytes",
                   [&](auto& v2, auto& a2) {
                     queue.batch.max_bytes = read_int(v2, a2, 1024, kMaxUnitBytes);
                   }},
                  {"max_jobs",
                   [&](auto& v2, auto& a2) { queue.batch.max_jobs = read_int(v2, a2, 1, kMaxBatchJobs); }},
                  {"max_wait", [&](auto& v2, auto& a2) {
                     queue.batch.max_wait = read_duration(v2, a2, /*allow_zero=*/true);
                   }}});
           }},
          {"deadline", [&](auto& v, auto& a) { queue.deadline = read_duration(v, a); }},
          {"prefetch", [&](auto& v, auto& a) { queue.prefetch = read_bool(v, a); }},
          {"retry", [&](auto& v, auto& a) { read_retry(v, a, queue.retry); }},
          {"retention", [&](auto& v, auto& a) { retention = read_retention(v, a); }},
          {"sink",
           [&](auto& v, auto& a) {
             queue.sink = read_string(v, a);
             if (!valid_sink_name(queue.sink)) {
               fail(a,
                    "expected a function name, optionally schema-qualified (e.g. app.store_embedding), "
                    "got " +
                        quoted(queue.sink));
             }
           }},
      },
      /*required=*/true);
  if (!has_name) fail(at, "missing required key name");
  const std::string where = "queue " + quoted(queue.name) + ": ";
  if (has_handler && queue.is_model()) {
    fail(at.child("model", handler_mark), where + "has both handler and model; give exactly one");
  }
  if (!has_handler && !queue.is_model())
    fail(at, where + "missing required key handler or model (exactly one)");
  if (has_handler && !model_keys.empty()) {
    fail(at.child(model_keys.front().first, model_keys.front().second),
         where + "only a model queue takes this key (this queue has handler " + quoted(queue.handler) + ")");
  }
  if (queue.is_model()) {
    if (queue.inputs.empty())
      fail(at, where + "missing required key inputs (a model queue declares its inputs)");
    if (queue.outputs.empty())
      fail(at, where + "missing required key outputs (a model queue declares its outputs)");
  }
  return queue;
}

void read_queues(const YAML::Node& node, const At& at, std::vector<QueueSettings>& queues,
                 std::vector<RetentionKeys>& retention) {
  if (!node.IsSequence()) fail(at, "expected a list of queues, got " + describe(node));
  for (const YAML::Node& item : node) {
    const std::string index = "[" + std::to_string(queues.size()) + "]";
    // An item left empty ("-" alone) is marked by yaml-cpp at the token after
    // it, so its error may name the next line; an explicit "~" is exact.
    const At item_at{at.source, at.path + index, item.Mark().is_null() ? at.mark : item.Mark()};
    YAML::Mark name_mark = YAML::Mark::null_mark();
    RetentionKeys keys;
    QueueSettings queue = read_queue(item, item_at, name_mark, keys);
    const auto same = std::find_if(queues.begin(), queues.end(),
                                   [&](const QueueSettings& q) { return q.name == queue.name; });
    if (same != queues.end()) {
      // Point at the second definition's name, where the fix usually goes.
      fail(item_at.child("name", name_mark), "duplicate queue name " + quoted(queue.name) + " (also queues[" +
                                                 std::to_string(same - queues.begin()) + "])");
    }
    queues.push_back(std::move(queue));
    retention.push_back(keys);
  }
}

Settings read_document(const YAML::Node& root, const std::string& source) {
  Settings settings;
  settings.source = source;
  const At at{&settings.source, "", root.Mark()};
  // Applied once all is read: the top-level retention may come after the queues.
  RetentionKeys retention;
  std::vector<RetentionKeys> queue_retention;
  read_map(
      root, at,
      {
          {"database",
           [&](auto& v, auto& a) {
             read_map(
                 v, a,
                 {
                     {"url",
                      [&](auto& v2, auto& a2) {
                        settings.database.url = read_string(v2, a2);
                        if (settings.database.url.empty()) fail(a2, "must not be empty");
                      }},
                     {"transaction_pooling",
                      [&](auto& v2, auto& a2) { settings.database.transaction_pooling = read_bool(v2, a2); }},
                 });
           }},
          {"worker", [&](auto& v, auto& a) { read_worker(v, a, settings.worker); }},
          {"metrics",
           [&](auto& v, auto& a) {
             read_map(
                 v, a,
                 {{"listen", [&](auto& v2, auto& a2) { settings.metrics.listen = read_listen(v2, a2); }}});
           }},
          {"logging",
           [&](auto& v, auto& a) {
             read_map(
                 v, a,
                 {
                     {"level",
                      [&](auto& v2, auto& a2) { settings.logging.level = read_choice(v2, a2, kLogLevels); }},
                     {"format",
                      [&](auto& v2, auto& a2) {
                        settings.logging.format = read_choice(v2, a2, kLogFormats);
                      }},
                 });
           }},
          {"retention", [&](auto& v, auto& a) { retention = read_retention(v, a); }},
          {"queues", [&](auto& v, auto& a) { read_queues(v, a, settings.queues, queue_retention); }},
      });
  retention.apply_to(settings.retention);
  for (std::size_t i = 0; i < settings.queues.size(); ++i) {
    settings.queues[i].retention = settings.retention;
    queue_retention[i].apply_to(settings.queues[i].retention);
  }
  return settings;
}

void apply_environment(Settings& settings) {
  const char* url = std::getenv(kDatabaseUrlEnv);
  if (url != nullptr && *url != '\0') settings.database.url = url;
}

}  // namespace

Settings parse_settings(const std::string& yaml_text, const std::string& source) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(yaml_text);
  } catch (const YAML::Exception& e) {
    fail(At{&source, "", e.mark}, "invalid YAML: " + e.msg);
  }
  if (documents.size() > 1) {
    fail(At{&source, "", documents[1].Mark()},
         "expected one YAML document, found " + std::to_string(documents.size()));
  }
  if (documents.empty()) {
    Settings settings;
    settings.source = source;
    return settings;
  }
  try {
    return read_document(documents.front(), source);
  } catch (const YAML::Exception& e) {
    // Not expected (we never convert with as<>), but a yaml-cpp exception
    // must not leave this folder.
    fail(At{&source, "", e.mark}, e.msg);
  }
}

namespace {

std::string read_config_file(const std::string& path) {
  const auto cannot_read = [&](int error) {
    throw ConfigError("config " + path + ": cannot read: " + std::generic_category().message(error));
  };
  util::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) cannot_read(errno);
  std::string text;
  char buffer[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      cannot_read(errno);
    }
    text.append(buffer, static_cast<std::size_t>(n));
  }
  return text;
}

// A relative model or library path means "beside the config file", made
// absolute: executors read a copy of the config from /proc/PID/fd/N, where
// a path relative to a relative config path would resolve under /proc.
std::string beside(const std::string& config_path, const std::string& p) {
  if (p.empty() || p.front() == '/') return p;
  std::string dir;
  if (config_path.empty() || config_path.front() != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd) == nullptr)
      throw ConfigError("config " + config_path + ": cannot resolve " + p +
                        ": getcwd: " + std::strerror(errno));
    dir = std::string(cwd) + "/";
  }
  const std::size_t slash = config_path.rfind('/');
  if (slash != std::string::npos) dir += config_path.substr(0, slash + 1);
  return dir + p;
}

}  // namespace

Settings load_settings(const std::string& path) {
  Settings settings = parse_settings(read_config_file(path), path);
  for (QueueSettings& queue : settings.queues) {
    queue.model = beside(path, queue.model);
    for (std::string& library : queue.extra_libraries) library = beside(path, library);
  }
  apply_environment(settings);
  return settings;
}

std::string executor_document(const std::string& path) {
  std::string text = read_config_file(path);
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError("config " + path + ": invalid YAML: " + e.msg);
  }
  if (!root.IsMap()) return text;  // empty: all defaults, nothing secret
  root.remove("database");
  const YAML::Node queues = root["queues"];
  if (queues && queues.IsSequence()) {
    for (YAML::Node queue : queues) {
      if (!queue.IsMap()) continue;
      if (queue["model"] && queue["model"].IsScalar())
        queue["model"] = beside(path, queue["model"].as<std::string>());
      YAML::Node libraries = queue["extra_libraries"];
      if (libraries && libraries.IsSequence()) {
        for (std::size_t i = 0; i < libraries.size(); ++i)
          if (libraries[i].IsScalar()) libraries[i] = beside(path, libraries[i].as<std::string>());
      }
    }
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

const std::vector<std::string>& model_datatypes() {
  static const std::vector<std::string> kTypes{"FP32",  "FP16", "FP64",  "INT64",
                                               "INT32", "INT8", "UINT8", "BOOL"};
  return kTypes;
}

std::vector<std::string> queue_names(const Settings& settings) {
  std::vector<std::string> names;
  for (const QueueSettings& q : settings.queues) names.push_back(q.name);
  return names;
}

int executor_count(const Settings& settings) {
  int executors = 0;
  for (const QueueSettings& q : settings.queues) executors += q.instances;
  return executors;
}

int executor_threads(const Settings& settings, const QueueSettings& queue) {
  if (queue.threads > 0) return queue.threads;
  const int executors = executor_count(settings);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, executors));
}

Settings default_settings() {
  Settings settings;
  settings.source = kDefaultsSource;
  apply_environment(settings);
  return settings;
}

}  // namespace inferq::config
