#include "supervisor/completion_writer.hpp"

#include <spdlog/spdlog.h>

#include "db/error.hpp"
#include "util/backoff.hpp"

namespace inferq::supervisor {
namespace {

// Bounds one write's transaction; a backlog drains in several writes. The
// bound is in jobs because a transaction's length is: while it runs, VACUUM
// may remove no row that died after it began, so a long one leaves the
// claims walking dead index entries, which slows the daemon, which makes the
// next write longer. Measured on a 1,000,000 backlog: unbounded at 256
// units of 512 jobs, one write ran 23 s and the drain fell to 5,000 jobs/s.
// A unit is never split: a unit over the bound is written alone.
constexpr std::size_t kMaxUnitsPerWrite = 256;
constexpr std::size_t kMaxJobsPerWrite = 4096;

// Bounds one write's bytes. PostgreSQL refuses a message over 1 GiB (the
// connection is reset, which looks retryable, so such a write was retried
// forever), and it holds the document's text and its jsonb at once. A unit's
// results past the bound fail instead of being written, so that every unit
// fits in a write of its own.
constexpr std::size_t kMaxBytesPerWrite = std::size_t{256} * 1024 * 1024;

std::size_t unit_bytes(const db::UnitFinish& unit) {
  std::size_t n = 0;
  for (const auto& j : unit.jobs) n += db::completion_bytes(j);
  return n;
}

// Fails the successes of `unit` whose results would take it past
// kMaxBytesPerWrite, in job order.
void bound_results(db::UnitFinish& unit) {
  std::size_t bytes = 0;
  for (auto& j : unit.jobs) {
    if (j.ok && bytes + db::completion_bytes(j) > kMaxBytesPerWrite) {
      j.ok = false;
      j.error_class = db::ErrorClass::kPermanent;
      j.message = "the result of " + std::to_string(j.result_json.size() + j.result_binary.size()) +
                  " bytes could not be stored: a unit's results are written " +
                  std::to_string(kMaxBytesPerWrite >> 20) + " MiB at most";
      j.result_json.clear();
      j.result_binary.clear();
    }
    bytes += db::completion_bytes(j);
  }
}

std::size_t job_count(const std::vector<db::UnitFinish>& units) {
  std::size_t n = 0;
  for (const auto& u : units) n += u.jobs.size();
  return n;
}

}  // namespace

CompletionWriter::CompletionWriter(std::string db_url, std::string worker_name, LeaseRegistry& leases,
                                   std::function<void()> on_written, OutcomesFn on_outcomes,
                                   std::function<void()> on_db_error, UnitWrittenFn on_unit_written)
    : session_(std::move(db_url), "inferq completion writer", std::chrono::seconds(60)),
      worker_name_(std::move(worker_name)),
      leases_(leases),
      on_written_(std::move(on_written)),
      on_outcomes_(std::move(on_outcomes)),
      on_db_error_(std::move(on_db_error)),
      on_unit_written_(std::move(on_unit_written)) {}

CompletionWriter::~CompletionWriter() { stop(); }

void CompletionWriter::start() {
  thread_ = std::thread([this] { loop(); });
}

void CompletionWriter::submit(db::UnitFinish unit) {
  bound_results(unit);
  unit.submitted_at = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(unit));
  }
  cv_.notify_all();
}

bool CompletionWriter::flush(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_until(lock, deadline, [&] { return (queue_.empty() && in_flight_ == 0) || stop_; }) &&
         queue_.empty() && in_flight_ == 0;
}

void CompletionWriter::stop() noexcept {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t CompletionWriter::jobs_written() const {
  std::lock_guard<std::mutex> lock(mu_);
  return written_;
}

std::uint64_t CompletionWriter::jobs_fenced_out() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fenced_out_;
}

void CompletionWriter::loop() {
  util::Backoff backoff(std::chrono::milliseconds(100), std::chrono::seconds(5));
  std::vector<db::UnitFinish> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty() || !batch.empty(); });
      if (stop_) return;
      std::size_t jobs = job_count(batch);
      std::size_t bytes = 0;
      for (const auto& u : batch) bytes += unit_bytes(u);
      while (!queue_.empty() && batch.size() < kMaxUnitsPerWrite &&
             (batch.empty() || (jobs + queue_.front().jobs.size() <= kMaxJobsPerWrite &&
                                bytes + unit_bytes(queue_.front()) <= kMaxBytesPerWrite))) {
        jobs += queue_.front().jobs.size();
        bytes += unit_bytes(queue_.front());
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      in_flight_ = batch.size();
    }
    bool claimable = false;
    try {
      write_batch(batch, claimable);
      batch.clear();
      backoff.reset();
      {
        std::lock_guard<std::mutex> lock(mu_);
        in_flight_ = 0;
      }
      cv_.notify_all();
      if (claimable && on_written_) on_written_();
    } catch (const db::DbError& e) {
      if (claimable && on_written_) on_written_();  // for the units written before it failed
      // Only a lost connection or a lost race (a deadlock with a producer's
      // transaction, say) gets here; write_batch handles bad data. Keep the
      // batch and write it again.
      const auto delay = backoff.next();
      if (on_db_error_) on_db_error_();
      spdlog::warn("completion writer: {}; retrying {} job(s) in {} ms", e.what(), job_count(batch),
                   delay.count());
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, delay, [&] { return stop_; });
    }
  }
}

void CompletionWriter::write_batch(std::vector<db::UnitFinish>& batch, bool& claimable) {
  std::vector<db::OutcomeCount> outcomes;
  const auto account = [&](const std::vector<db::UnitFinish>& units, int written) {
    const auto committed = std::chrono::steady_clock::now();
    for (const auto& u : units) {
      leases_.remove(u.lease_id);
      claimable = claimable || u.keyed;
      if (on_unit_written_)
        on_unit_written_(u.queue, std::chrono::duration<double>(committed - u.submitted_at).count());
    }
    for (const auto& o : outcomes)
      claimable =
          claimable || o.outcome == db::JobOutcome::kRequeued || o.outcome == db::JobOutcome::kRetried;
    if (on_outcomes_) on_outcomes_(outcomes);
    outcomes.clear();
    const auto total = job_count(units);
    std::lock_guard<std::mutex> lock(mu_);
    written_ += static_cast<std::uint64_t>(written);
    fenced_out_ += total - static_cast<std::uint64_t>(written);
    if (static_cast<std::size_t>(written) < total) {
      spdlog::warn(
          "completion writer: {} of {} job(s) not written: their lease was reaped "
          "(another daemon owns them now)",
          total - static_cast<std::size_t>(written), total);
    }
  };
  try {
    account(batch, db::complete(session_, batch, worker_name_, &outcomes));
    return;
  } catch (const db::DbError& e) {
    if (e.retryable()) throw;
    if (on_db_error_) on_db_error_();
    spdlog::error("completion writer: batch of {} unit(s) rejected ({}); writing them one by one",
                  batch.size(), e.what());
  }
  // Bad data in one unit (say, a result that is not valid JSON) must not hold
  // up the others: write each alone, and a unit that still fails as failed.
  // Written units leave `batch` at once, so a retry after a lost connection
  // or race (the exception leaves the rest in `batch`) writes only the rest.
  while (!batch.empty()) {
    std::vector<db::UnitFinish> one{batch.front()};
    try {
      account(one, db::complete(session_, one, worker_name_, &outcomes));
      batch.erase(batch.begin());
      continue;
    } catch (const db::DbError& e) {
      if (e.retryable()) throw;
      for (auto& job : one[0].jobs) {
        if (job.ok) {
          job.ok = false;
          job.error_class = db::ErrorClass::kPermanent;
          job.message = std::string("the result could not be stored: ") + e.what();
          job.result_json.clear();
          job.result_binary.clear();
        }
      }
    }
    try {
      account(one, db::complete(session_, one, worker_name_, &outcomes));
    } catch (const db::DbError& e) {
      if (e.retryable()) throw;
      spdlog::error("completion writer: giving up on lease {}: {}; its jobs will be reaped", one[0].lease_id,
                    e.what());
      leases_.remove(one[0].lease_id);
    }
    batch.erase(batch.begin());
  }
}

}  // namespace inferq::supervisor
