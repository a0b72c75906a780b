#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

// Plain settings structs: what the daemon and the CLI are configured with.
// Only src/config/ includes yaml-cpp; everything else sees these structs.
namespace inferq::config {

using Duration = std::chrono::milliseconds;

struct DatabaseSettings {
  std::string url = "postgresql:///inferq";
  // url goes through a pooler in transaction mode (PgBouncer pool_mode =
  // transaction): unnamed statements, no session state, no LISTEN (the tick
  // polls), no janitor VACUUM. false: PostgreSQL itself or session pooling.
  bool transaction_pooling = false;
};

struct WorkerSettings {
  Duration poll_interval{1000};       // tick fallback when no notification comes
  Duration heartbeat_interval{2000};  // how often live leases are renewed
  Duration stale_after{15000};        // a lease older than this is reaped
  Duration shutdown_grace{30000};     // running units may finish this long on SIGTERM
  // The executor binary; empty = inferq-executor beside the inferq binary.
  std::string executor_path;
  // VACUUM inferq.jobs once it holds this many dead rows (0 = leave it to
  // autovacuum). Claims walk over dead index entries until a VACUUM.
  int vacuum_dead_rows = 50000;
};

struct MetricsSettings {
  std::string listen = "127.0.0.1:9847";
};

struct LoggingSettings {
  std::string level = "info";   // trace, debug, info, warn, error
  std::string format = "text";  // text or json
};

// How long a finished job stays in inferq.jobs, by its final state, before
// the janitor deletes it; 0 = for ever.
struct RetentionSettings {
  Duration succeeded{std::chrono::hours(24)};
  Duration cancelled{std::chrono::hours(24)};
  Duration dead{std::chrono::hours(24 * 7)};

  bool keeps_all() const { return succeeded.count() == 0 && cancelled.count() == 0 && dead.count() == 0; }
};

struct RetrySettings {
  int max_attempts = 5;    // default for jobs enqueued without max_attempts
  Duration backoff{1000};  // first retry delay; doubles per attempt, with jitter
  Duration max_backoff{300000};
};

// A unit's payloads are sent to its executor as one frame, which the
// protocol bounds at 1 GiB: this leaves room for the frame's own fields.
inline constexpr int kMaxUnitBytes = 900 * 1024 * 1024;

struct BatchSettings {
  int max_jobs = 16;  // jobs in one work unit (1..4096)
  // Payload bytes in one work unit (1 KiB..900 MiB): the jobs past it go
  // back unrun to a later unit, and a job bigger than it alone fails.
  int max_bytes = 256 * 1024 * 1024;
  // How long a partial unit may wait for more jobs before it runs; 0 = never
  // waits (the default: latency first).
  Duration max_wait{0};
};

// One declared model input. The shape excludes the batch dimension; -1 marks
// a variable-length dimension, padded with `pad` up to the longest in a unit.
struct ModelInput {
  std::string name;
  std::string datatype;  // FP32 FP16 FP64 INT64 INT32 INT8 UINT8 BOOL
  std::vector<std::int64_t> shape;
  double pad = 0;
  bool allow_non_finite = false;  // float inputs: accept NaN and infinities
};

struct ModelOutput {
  std::string name;
};

// The datatypes a model input may declare (Open Inference Protocol names).
const std::vector<std::string>& model_datatypes();

struct QueueSettings {
  std::string name;  // matches inferq.jobs.queue
  // "builtin:echo" | "builtin:sleep" | "builtin:fail" | "builtin:crash"; empty for a model
  std::string handler;
  int instances = 1;  // executor processes = slots for this queue (1..256)
  BatchSettings batch;
  Duration deadline{30000};  // per work unit
  // true: while a unit runs, its slot claims the next one, which starts the
  // moment the current one ends (its deadline counts from then), so the
  // executor never waits for a claim; but that unit waits for this slot even
  // when another daemon has an idle one. false: a slot claims when idle.
  bool prefetch = false;
  RetrySettings retry;

  // A model queue (exactly one of handler and model is set). A relative
  // path is taken from the config file's directory.
  std::string model;
  std::string device = "auto";       // auto | cpu | cuda:N
  int threads = 0;                   // intra-op threads per executor; 0 = see executor_threads()
  std::vector<ModelInput> inputs;    // the forward() arguments, in order
  std::vector<ModelOutput> outputs;  // a tensor, or tuple/list elements in order, or dict keys
  // true: results carry their outputs' data as raw little-endian bytes in
  // inferq.jobs.result_binary (Open Inference Protocol binary data
  // extension), each output's JSON entry giving its binary_data_size.
  bool binary_data_output = false;
  std::vector<std::string> extra_libraries;  // custom-op libraries loaded before the model
  Duration idle_exit_after{600000};          // an idle executor exits after this long; 0 = never

  // A SQL function fn(job_id bigint, payload jsonb, result jsonb) called for
  // each succeeded job inside its fenced completion transaction, e.g. to
  // write the result into the user's own table; empty = none. With
  // binary_data_output it takes the result's bytes too: fn(bigint, jsonb,
  // jsonb, bytea).
  std::string sink;

  // Its own retention keys, the others from the top-level retention.
  RetentionSettings retention;

  bool is_model() const { return !model.empty(); }
};

struct Settings {
  std::string source;  // file the settings came from ("<defaults>" when none)
  DatabaseSettings database;
  WorkerSettings worker;
  MetricsSettings metrics;
  LoggingSettings logging;
  RetentionSettings retention;  // for the queues that do not set their own
  std::vector<QueueSettings> queues;
};

// The queues' names, in file order.
std::vector<std::string> queue_names(const Settings& settings);

// Executor processes over all queues: the sum of their instances.
int executor_count(const Settings& settings);

// The intra-op thread count for an executor of `queue`: its `threads`, or
// when 0, the machine's cores divided by all executor instances of
// `settings`, at least 1. The supervisor and the executor both use it.
int executor_threads(const Settings& settings, const QueueSettings& queue);

// A configuration problem; what() names the file, line and key.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses YAML text; `source` names it in error messages. Unknown keys, wrong
// types and bad values throw ConfigError. Every key is optional, and a key or
// section left empty ("worker:" with its keys commented out) keeps its
// defaults; empty text gives all defaults. Does not apply the environment.
Settings parse_settings(const std::string& yaml_text, const std::string& source);

// Reads and parses `path`, then applies INFERQ_DATABASE_URL if set.
// Throws ConfigError when the file cannot be read or is invalid.
Settings load_settings(const std::string& path);

// The configuration an executor reads, made from the file at `path`: the
// same document without its `database` section, and with each queue's
// relative `model` and `extra_libraries` made absolute (beside `path`), so
// it can be read from anywhere. Executors get this, never the DSN.
// Throws ConfigError when the file cannot be read or is not YAML.
std::string executor_document(const std::string& path);

// Settings with every default and INFERQ_DATABASE_URL applied; for CLI
// commands run without a config file.
Settings default_settings();

}  // namespace inferq::config
