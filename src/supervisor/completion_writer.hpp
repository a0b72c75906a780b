#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "supervisor/lease_registry.hpp"
#include "supervisor/unit_writer.hpp"

namespace inferq::supervisor {

// The completion writer thread: takes finished units from the tick and writes
// them, fenced, in batches (one statement for what is pending, up to a few
// thousand jobs: see kMaxJobsPerWrite). A write
// that fails because the database is gone is retried until it lands; the
// write is idempotent, so a commit that was in doubt does no harm when
// repeated. After each write it drops the units' leases from the registry,
// and calls on_written when the write made work claimable (a keyed unit, or
// jobs back to available): the tick then claims a key's next unit at once.
// Other writes wake nothing: at one unit per job, a tick per write was a
// third of the daemon's statements.
class CompletionWriter final : public UnitWriter {
 public:
  // How the jobs of one write ended (for metrics); called on the writer thread.
  using OutcomesFn = std::function<void(const std::vector<db::OutcomeCount>&)>;
  // A unit of `queue` was committed `seconds` after its submit(); called on
  // the writer thread.
  using UnitWrittenFn = std::function<void(const std::string& queue, double seconds)>;

  // on_outcomes, on_db_error (each failed write) and on_unit_written are
  // optional metrics hooks.
  CompletionWriter(std::string db_url, std::string worker_name, LeaseRegistry& leases,
                   std::function<void()> on_written, OutcomesFn on_outcomes = {},
                   std::function<void()> on_db_error = {}, UnitWrittenFn on_unit_written = {});
  ~CompletionWriter() override;
  CompletionWriter(const CompletionWriter&) = delete;
  CompletionWriter& operator=(const CompletionWriter&) = delete;

  void start() override;
  void submit(db::UnitFinish unit) override;
  bool flush(std::chrono::steady_clock::time_point deadline) override;
  // Stops the thread (see UnitWriter::stop).
  void stop() noexcept override;

  // Jobs written, and jobs whose lease had been reaped so nothing was written.
  std::uint64_t jobs_written() const;
  std::uint64_t jobs_fenced_out() const;

 private:
  void loop();
  // Sets `claimable` once a written unit lets work be claimed that was not
  // claimable before: a key's next jobs, or jobs back to available.
  void write_batch(std::vector<db::UnitFinish>& batch, bool& claimable);

  db::Session session_;
  std::string worker_name_;
  LeaseRegistry& leases_;
  std::function<void()> on_written_;
  OutcomesFn on_outcomes_;
  std::function<void()> on_db_error_;
  UnitWrittenFn on_unit_written_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<db::UnitFinish> queue_;  // guarded by mu_
  std::size_t in_flight_ = 0;         // guarded by mu_: units taken but not yet written
  bool stop_ = false;                 // guarded by mu_
  std::uint64_t written_ = 0;         // guarded by mu_
  std::uint64_t fenced_out_ = 0;      // guarded by mu_
  std::thread thread_;
};

}  // namespace inferq::supervisor
