#include "supervisor/supervisor.hpp"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <system_error>
#include <unordered_map>

#include "config/compare.hpp"
#include "db/error.hpp"
#include "supervisor/unit_outcome.hpp"
#include "util/backoff.hpp"
#include "util/duration.hpp"
#include "util/strings.hpp"

namespace inferq::supervisor {
namespace {

using std::chrono::milliseconds;

// An executor must say Ready within this long of being started.
constexpr milliseconds kStartupTimeout{60000};
// After an executor closes its socket, how long it may take to exit before
// it is killed (an abort writing a core dump takes a moment).
constexpr milliseconds kExitGrace{2000};
// Restart backoff for executors that die before they are ready.
constexpr milliseconds kRestartBackoffBase{250};
constexpr milliseconds kRestartBackoffMax{30000};
// How long shutdown waits for the last completions and the release.
constexpr milliseconds kShutdownWriteBound{10000};

double seconds_between(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// What inferq_job_wait_seconds observes for claimed `jobs`.
std::vector<double> waits_of(const std::vector<db::ClaimedJob>& jobs) {
  std::vector<double> waits;
  waits.reserve(jobs.size());
  for (const auto& job : jobs) waits.push_back(job.wait_seconds);
  return waits;
}

// A completion's outcome as a metrics outcome; requeued (put back unrun,
// its attempt refunded) is none.
std::optional<metrics::Outcome> outcome_of(db::JobOutcome outcome) {
  switch (outcome) {
    case db::JobOutcome::kSucceeded:
      return metrics::Outcome::kSucceeded;
    case db::JobOutcome::kRetried:
      return metrics::Outcome::kRetried;
    case db::JobOutcome::kDead:
      return metrics::Outcome::kDead;
    case db::JobOutcome::kCancelled:
      return metrics::Outcome::kCancelled;
    case db::JobOutcome::kRequeued:
      return std::nullopt;
  }
  return std::nullopt;
}

const config::QueueSettings* find_queue(const config::Settings& settings, const std::string& name) {
  for (const auto& q : settings.queues)
    if (q.name == name) return &q;
  return nullptr;
}

// What identifies the file at `path` as it is now: a replaced or rewritten
// file reads differently.
std::string file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path + ": missing";
  return path + ":" + std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

std::string queue_file_stamp(const config::QueueSettings& queue) {
  if (!queue.is_model()) return {};
  std::string stamp = file_stamp(queue.model);
  for (const auto& lib : queue.extra_libraries) stamp += "|" + file_stamp(lib);
  return stamp;
}

// What the janitor prunes for `queues`, yielding while `units_running`.
Pruning pruning_of(const std::vector<config::QueueSettings>& queues, metrics::Metrics* metrics,
                   const std::atomic<bool>& units_running) {
  Pruning p;
  p.targets = prune_targets(queues);
  p.metrics = metrics;
  p.busy = [&units_running] { return units_running.load(std::memory_order_relaxed); };
  return p;
}

}  // namespace

Supervisor::Supervisor(SupervisorOptions options)
    : options_(std::move(options)),
      settings_(*options_.settings),
      clock_(*options_.clock),
      own_metrics_(options_.metrics ? nullptr
                                    : std::make_unique<metrics::Metrics>(
                                          config::queue_names(settings_), settings_.worker.poll_interval,
                                          metrics::BuildInfo{"unknown"}, clock_)),
      metrics_(options_.metrics ? *options_.metrics : *own_metrics_),
      writer_(options_.writer),
      db_(options_.statements ? options_.statements
                              : std::make_shared<PgTickStatements>(settings_.database.url),
          settings_.worker.poll_interval, metrics_),
      rng_(std::random_device{}()) {
  // Half a database would write through PostgreSQL what the other half
  // claimed elsewhere, with no heartbeat for its leases.
  if (!options_.statements != !options_.writer)
    throw std::invalid_argument("SupervisorOptions: set both statements and writer, or neither");
  if (!writer_) {
    writer_ = std::make_shared<CompletionWriter>(
        settings_.database.url, options_.worker_name, leases_, [this] { wake(); },
        [this](const std::vector<db::OutcomeCount>& counts) {
          for (const auto& c : counts) {
            if (const auto outcome = outcome_of(c.outcome)) metrics_.jobs_finished(c.queue, *outcome, c.jobs);
          }
        },
        [this] { metrics_.db_error(metrics::DbOp::kComplete); },
        [this](const std::string& queue, double seconds) {
          metrics_.unit_stage(queue, metrics::Stage::kComplete, seconds);
        });
  }
  if (!options_.statements) {
    heartbeater_ = std::make_unique<Heartbeater>(
        settings_.database.url, options_.worker_id, settings_.worker.heartbeat_interval, leases_,
        [this] { return tick_alive(); }, [this] { wake(); },
        [this] { metrics_.db_error(metrics::DbOp::kHeartbeat); });
    // Its VACUUM lock is session state, which a transaction pooler does not keep.
    janitor_ = std::make_unique<Janitor>(
        settings_.database.url,
        settings_.database.transaction_pooling ? 0 : settings_.worker.vacuum_dead_rows,
        std::chrono::seconds(1), pruning_of(settings_.queues, &metrics_, units_running_));
  }
  generations_.push_back(make_generation(settings_));
  for (const auto& q : settings_.queues) {
    for (int i = 0; i < q.instances; ++i) {
      auto slot = std::make_unique<Slot>();
      slot->queue = &q;
      slot->gen = generations_.back().get();
      slot->index = i;
      slots_.push_back(std::move(slot));
    }
  }
}

Supervisor::~Supervisor() = default;

std::unique_ptr<Generation> Supervisor::make_generation(const config::Settings& settings) {
  auto gen = std::make_unique<Generation>();
  gen->settings = &settings;
  for (const auto& q : gen->settings->queues) gen->file_stamps[q.name] = queue_file_stamp(q);
  const auto& queues = gen->settings->queues;
  if (std::none_of(queues.begin(), queues.end(), [](const auto& q) { return q.is_model(); })) return gen;
  // Model code has no business with the DSN (issue 13 item 5): executors
  // read the daemon's file without its database section, from memory.
  const std::string text = config::executor_document(gen->settings->source);
  gen->config_fd = util::UniqueFd(::memfd_create("inferq-executor-config", MFD_CLOEXEC));
  if (!gen->config_fd) throw std::system_error(errno, std::generic_category(), "memfd_create");
  for (std::size_t off = 0; off < text.size();) {
    const ssize_t n = ::write(gen->config_fd.get(), text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::system_error(errno, std::generic_category(), "writing the executors' config");
    off += static_cast<std::size_t>(n);
  }
  gen->config_path = "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(gen->config_fd.get());
  return gen;
}

bool Supervisor::tick_alive() const {
  // The tick waits at most poll_interval between ticks; allow slow statements
  // too, but never so long that a wedged loop keeps its leases.
  const auto bound = std::max<std::chrono::steady_clock::duration>(3 * settings_.worker.poll_interval,
                                                                   settings_.worker.stale_after / 2);
  const auto last = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(last_tick_ns_.load()));
  return clock_.now() - last < bound;
}

std::string Supervisor::slot_name(const Slot& slot) const {
  std::string name = slot.queue->name + "#" + std::to_string(slot.index);
  if (slot.proc) name += " (pid " + std::to_string(slot.proc->pid()) + ")";
  return name;
}

int Supervisor::run() {
  start();
  while (step()) {
  }
  return finish();
}

void Supervisor::start() {
  const auto now = clock_.now();
  last_tick_ns_ = util::steady_ns(now);
  writer_->start();
  if (heartbeater_) heartbeater_->start();
  if (janitor_) janitor_->start();
  for (auto& slot : slots_) start_executor(*slot, now);
  spdlog::info("worker {} running {} queue(s) with {} executor slot(s)", options_.worker_name,
               settings_.queues.size(), slots_.size());
}

bool Supervisor::step(std::optional<milliseconds> max_wait) {
  tick();
  const auto t = clock_.now();
  if (draining_) {
    const bool busy = std::any_of(slots_.begin(), slots_.end(),
                                  [](const auto& s) { return s->state() == Slot::State::kBusy; });
    if (!busy || stop_now_ || t >= drain_deadline_) return false;
  }
  wait_for_events(t, max_wait);
  return true;
}

std::vector<SlotState> Supervisor::slot_states() const {
  std::vector<SlotState> states;
  states.reserve(slots_.size());
  for (const auto& s : slots_) states.push_back(s->state());
  return states;
}

void Supervisor::tick() {
  const auto now = clock_.now();
  last_tick_ns_ = util::steady_ns(now);
  if (reload_requested_) {
    reload_requested_ = false;
    reload(now);
  }
  // README guarantee "reap first, every tick": whatever the slots say (with
  // a slot free, the same statement then claims for it).
  auto reaped = reap_stale(now);
  stop_lost_units(now);
  top_up_filling_units(now);
  if (!draining_) start_stopped_queues(now);
  claim_for_slots(now, reaped);
  if (draining_) {
    for (auto& slot : slots_) give_back_next(*slot, "the daemon is shutting down");
  }
  retire_slots(now);
  publish_slots();
  metrics_.tick_done(seconds_between(now, clock_.now()));
  announce_ready_once();
  if (options_.on_tick) options_.on_tick();
}

void Supervisor::announce_ready_once() {
  if (announced_ready_ || draining_ || db_.failing() || !options_.on_ready) return;
  // failing() is false only after this tick's statements succeeded (or
  // none has failed yet, right after start-up checked the database).
  const bool all_ready = std::all_of(slots_.begin(), slots_.end(), [](const auto& s) {
    return s->state() == Slot::State::kIdle || s->state() == Slot::State::kBusy;
  });
  if (!all_ready) return;
  announced_ready_ = true;
  options_.on_ready();
}

void Supervisor::publish_slots() {
  units_running_ = std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s->holds_unit(); });
  for (const auto& q : generations_.back()->settings->queues) {
    int busy = 0, idle = 0, starting = 0;
    for (const auto& s : slots_) {
      // By name: the old executors of a reloaded queue count too.
      if (s->queue->name != q.name) continue;
      if (s->holds_unit()) {
        ++busy;
      } else if (s->state() == Slot::State::kIdle || s->state() == Slot::State::kStopped) {
        // A stopped slot (its executor exited idle) starts again on demand:
        // capacity, not an outage, so /readyz stays ready.
        ++idle;
      } else {
        ++starting;
      }
    }
    metrics_.set_slots(q.name, busy, idle, starting);
  }
}

util::LogScope Supervisor::log_scope(const Slot& slot) const {
  std::vector<util::LogField> fields = {util::LogField::text("queue", slot.queue->name),
                                        util::LogField::number("slot", slot.index)};
  if (slot.proc) fields.push_back(util::LogField::number("executor_pid", slot.proc->pid()));
  if (slot.unit) {
    fields.push_back(util::LogField::number("lease", slot.unit->lease_id));
    std::vector<std::int64_t> ids;
    for (const auto& j : slot.unit->jobs) ids.push_back(j.id);
    fields.push_back(util::LogField::numbers("job_ids", ids));
  }
  return util::LogScope(std::move(fields));
}

void Supervisor::record_unit_end(const Slot& slot) {
  metrics_.unit_finished(slot.queue->name, seconds_between(slot.unit_started, clock_.now()));
}

void Supervisor::top_up_filling_units(TimePoint now) {
  for (auto& slot_ptr : slots_) {
    Slot& slot = *slot_ptr;
    if (slot.state() != Slot::State::kFilling || !slot.unit) continue;
    const int max_jobs = slot.queue->batch.max_jobs;
    auto& jobs = slot.unit->jobs;
    if (db_.usable(now) && static_cast<int>(jobs.size()) < max_jobs) {
      std::vector<db::ClaimedJob> more;
      const auto failed = db_.run(metrics::DbOp::kClaim, [&](TickStatements& s) {
        more = s.claim_more(slot.unit->lease_id, slot.queue->name, max_jobs - static_cast<int>(jobs.size()),
                            slot.queue->retry.max_attempts);
      });
      if (failed) {
        // The unit still runs with what it has when its wait ends.
        if (failed->resource_limit()) {
          fail_unclaimable(*slot.queue, *failed, now);
        } else {
          db_.outage(*failed, now);
        }
      } else if (!more.empty()) {
        metrics_.jobs_claimed(slot.queue->name, waits_of(more));
        for (auto& job : more) jobs.push_back(std::move(job));
      }
    }
    if (draining_ || slot.retiring || static_cast<int>(jobs.size()) >= max_jobs || now >= slot.timer) {
      db::ClaimedUnit unit = std::move(*slot.unit);
      slot.unit.reset();
      dispatch(slot, std::move(unit), now);
    }
  }
}

void Supervisor::start_stopped_queues(TimePoint now) {
  for (const auto& queue : generations_.back()->settings->queues) {
    Slot* stopped = nullptr;
    bool can_claim = false;  // a ready or starting executor will take the work
    for (auto& slot : slots_) {
      if (slot->queue != &queue || slot->retiring) continue;
      if (slot->state() == Slot::State::kStopped && stopped == nullptr) stopped = slot.get();
      if (slot->state() == Slot::State::kIdle || slot->state() == Slot::State::kStarting) can_claim = true;
    }
    if (stopped == nullptr || can_claim) continue;
    if (!db_.usable(now)) return;
    bool work = false;
    if (const auto failed =
            db_.run(std::nullopt, [&](TickStatements& s) { work = s.has_available_work(queue.name); })) {
      db_.outage(*failed, now);
      return;
    }
    if (!work) continue;
    spdlog::info("{}#{}: queue {} has work; starting an executor", queue.name, stopped->index, queue.name);
    start_executor(*stopped, now);
  }
}

bool Supervisor::wants_next(const Slot& slot) const {
  // A unit that waits to fill (max_wait) is claimed when the slot is idle.
  return slot.state() == Slot::State::kBusy && !slot.next && !slot.retiring && slot.queue->prefetch &&
         slot.queue->batch.max_wait.count() == 0;
}

Supervisor::ReapResult Supervisor::reap_stale(TimePoint now) {
  ReapResult result;
  if (!db_.usable(now)) return result;
  // With a slot free, the reap's statement also claims its first unit; with
  // none, a busy slot's next one.
  Slot* idle = nullptr;
  Slot* ahead = nullptr;
  if (!draining_) {
    for (auto& slot : slots_) {
      if (slot->state() == Slot::State::kIdle && !slot->retiring) {
        // A unit of its queue claimed ahead goes to it (claim_for_slots)
        // before anything claimed after it.
        if (oldest_next_of(slot->queue) != nullptr) continue;
        idle = slot.get();
        break;
      }
      if (ahead == nullptr && wants_next(*slot)) ahead = slot.get();
    }
  }
  Slot* const for_slot = idle != nullptr ? idle : ahead;
  std::optional<db::DbError> claim_failed;
  int n = 0;
  const auto failed = db_.run(metrics::DbOp::kReap, [&](TickStatements& s) {
    if (for_slot == nullptr) {
      n = s.reap(settings_.worker.stale_after, leases_.snapshot());
      return;
    }
    try {
      auto r = s.reap_then_claim(settings_.worker.stale_after, leases_.snapshot(), for_slot->queue->name,
                                 options_.worker_id, for_slot->queue->batch.max_jobs,
                                 for_slot->queue->retry.max_attempts);
      n = r.reaped;
      if (idle != nullptr) {
        result.claimed_for = idle;
        result.unit = std::move(r.unit);
      } else if (r.unit) {
        set_next(*ahead, std::move(*r.unit));
      } else {
        result.no_claim_for = ahead->queue;
      }
    } catch (const db::DbError& e) {
      if (!e.resource_limit()) throw;
      // Its claim failed on a payload it read (issue 13): the reap must
      // never wait on one queue's data, so it runs alone; the claim below
      // deals with the payload.
      spdlog::warn("reap with the claim of queue {}: {}; reaping on its own", for_slot->queue->name,
                   e.what());
      claim_failed = e;
      n = s.reap(settings_.worker.stale_after, leases_.snapshot());
    }
  });
  if (!failed) {
    if (n > 0) spdlog::warn("reaped {} stale lease(s); their jobs are available again", n);
    metrics_.leases_reaped(n);
  } else if (failed->retryable() && !failed->connection_lost()) {
    // A key lock it gave way on (see inferq.lock_keys): not an outage. The
    // claim it carried is made on its own below.
    spdlog::warn("reap: {}; the next tick reaps again", failed->what());
    return result;
  } else {
    db_.outage(*failed, now);
  }
  // The payload is dealt with now, not by claiming it again first: every
  // statement that reads it makes its (maybe 1 GB) text, seconds each.
  if (claim_failed && !fail_unclaimable(*for_slot->queue, *claim_failed, now))
    result.no_claim_for = for_slot->queue;
  return result;
}

void Supervisor::stop_lost_units(TimePoint now) {
  for (const auto lease : leases_.take_lost()) {
    for (auto& slot : slots_) {
      if (slot->next && slot->next->lease_id == lease) {
        spdlog::warn("{}: lease {} of its next unit was reaped; dropping it", slot_name(*slot), lease);
        slot->next.reset();
      }
      if (slot->state() == Slot::State::kFilling && slot->unit && slot->unit->lease_id == lease) {
        spdlog::warn("{}: lease {} was reaped while its unit was filling; dropping it", slot_name(*slot),
                     lease);
        slot->unit.reset();
        slot->enter(Slot::State::kIdle);
        continue;
      }
      if (slot->state() != Slot::State::kBusy || !slot->unit || slot->unit->lease_id != lease) continue;
      const auto scope = log_scope(*slot);
      // Another daemon owns these jobs now; running on would only waste the
      // slot (and a GPU) until the deadline, and the result is fenced out.
      spdlog::warn("{}: lease {} was reaped by another daemon; stopping its unit", slot_name(*slot), lease);
      slot->unit.reset();
      slot->unsent.clear();
      slot->count_restart = false;
      kill_executor(*slot, now, "lease lost");
    }
  }
}

void Supervisor::claim_for_slots(TimePoint now, ReapResult& reap) {
  std::vector<const config::QueueSettings*> exhausted;
  // What the reap's statement claimed is taken first, before anything below
  // can return: its lease is live and must reach a slot.
  if (reap.claimed_for != nullptr && !take_unit(*reap.claimed_for, std::move(reap.unit), now))
    exhausted.push_back(reap.claimed_for->queue);
  if (reap.no_claim_for != nullptr) exhausted.push_back(reap.no_claim_for);
  if (draining_) return;
  // Idle slots first, then busy slots' next units: a queue's work goes to a
  // slot that starts it now before one that would start it after its unit.
  for (const bool ahead : {false, true}) {
    for (auto& slot_ptr : slots_) {
      Slot& slot = *slot_ptr;
      const bool wants = ahead ? wants_next(slot) : slot.state() == Slot::State::kIdle && !slot.retiring;
      if (!wants) continue;
      if (!ahead && take_oldest_next(slot, now)) continue;
      if (std::find(exhausted.begin(), exhausted.end(), slot.queue) != exhausted.end()) continue;
      if (!db_.usable(now)) return;
      std::optional<db::ClaimedUnit> unit;
      const auto result = claim_for(slot, now, unit);
      if (result == ClaimResult::kDbFailed) return;
      bool more = false;  // the queue may have more to claim this tick
      if (result == ClaimResult::kClaimed && !ahead) {
        more = take_unit(slot, std::move(unit), now);
      } else if (result == ClaimResult::kClaimed && unit) {
        set_next(slot, std::move(*unit));
        more = true;
      }
      if (!more) exhausted.push_back(slot.queue);
    }
  }
}

Supervisor::ClaimResult Supervisor::claim_for(const Slot& slot, TimePoint now,
                                              std::optional<db::ClaimedUnit>& unit) {
  for (bool first = true;; first = false) {
    const auto failed = db_.run(metrics::DbOp::kClaim, [&](TickStatements& s) {
      unit = s.claim(slot.queue->name, options_.worker_id, slot.queue->batch.max_jobs,
                     slot.queue->retry.max_attempts);
    });
    if (!failed) return ClaimResult::kClaimed;
    if (!failed->resource_limit()) {
      db_.outage(*failed, now);
      return ClaimResult::kDbFailed;
    }
    // Once: a claim that fails again has another cause, and the next tick
    // tries again; either way the other queues are claimed for.
    if (!first || !fail_unclaimable(*slot.queue, *failed, now))
      return db_.usable(now) ? ClaimResult::kQueueSkipped : ClaimResult::kDbFailed;
  }
}

bool Supervisor::fail_unclaimable(const config::QueueSettings& queue, const db::DbError& why, TimePoint now) {
  int n = 0;
  const auto failed = db_.run(metrics::DbOp::kClaim, [&](TickStatements& s) {
    n = s.fail_unclaimable(queue.name, queue.batch.max_jobs);
  });
  if (failed) {
    if (failed->resource_limit() || (failed->retryable() && !failed->connection_lost())) {
      spdlog::warn("queue {}: finding the payloads that fail its claims failed: {}", queue.name,
                   failed->what());
    } else {
      db_.outage(*failed, now);
    }
    return false;
  }
  if (n > 0) {
    spdlog::warn("queue {}: a claim failed ({}); {} job(s) whose payload cannot be served are now dead",
                 queue.name, why.what(), n);
    metrics_.jobs_finished(queue.name, metrics::Outcome::kDead, n);
  } else {
    spdlog::warn(
        "queue {}: a claim failed ({}), and no payload it would take is the cause; "
        "the next tick claims again",
        queue.name, why.what());
  }
  return n > 0;
}

void Supervisor::record_claimed(const Slot& slot, db::ClaimedUnit& unit) {
  unit.claimed_at = clock_.now();
  metrics_.jobs_claimed(slot.queue->name, waits_of(unit.jobs));
}

Slot* Supervisor::oldest_next_of(const config::QueueSettings* queue) const {
  // Units claimed in one tick share claimed_at; lease ids follow claim order.
  const auto older = [](const db::ClaimedUnit& a, const db::ClaimedUnit& b) {
    return a.claimed_at != b.claimed_at ? a.claimed_at < b.claimed_at : a.lease_id < b.lease_id;
  };
  Slot* oldest = nullptr;
  for (const auto& s : slots_) {
    if (s->queue != queue || !s->next) continue;
    if (oldest == nullptr || older(*s->next, *oldest->next)) oldest = s.get();
  }
  return oldest;
}

bool Supervisor::take_oldest_next(Slot& slot, TimePoint now) {
  Slot* const holder = oldest_next_of(slot.queue);
  if (holder == nullptr) return false;
  if (holder != &slot) {
    spdlog::debug("{}: taking unit {}, claimed ahead by {}", slot_name(slot), holder->next->lease_id,
                  slot_name(*holder));
  }
  db::ClaimedUnit unit = std::move(*holder->next);
  holder->next.reset();
  dispatch(slot, std::move(unit), now);
  return true;
}

void Supervisor::set_next(Slot& slot, db::ClaimedUnit unit) {
  record_claimed(slot, unit);
  leases_.add(unit.lease_id);
  slot.next = std::move(unit);
}

void Supervisor::take_unsent(Slot& slot, db::UnitFinish& finish) {
  for (auto& f : slot.unsent) finish.jobs.push_back(std::move(f));
  slot.unsent.clear();
}

void Supervisor::give_back_next(Slot& slot, const std::string& why) {
  if (!slot.next) return;
  // Through the completion writer, fenced like any completion: the jobs go
  // back to available with their attempt refunded, and the lease ends.
  spdlog::debug("{}: giving back its next unit {} ({})", slot_name(slot), slot.next->lease_id, why);
  writer_->submit(given_back(*slot.queue, *slot.next, why));
  slot.next.reset();
}

bool Supervisor::take_unit(Slot& slot, std::optional<db::ClaimedUnit> unit, TimePoint now) {
  if (!unit) return false;
  record_claimed(slot, *unit);
  const bool full = static_cast<int>(unit->jobs.size()) >= slot.queue->batch.max_jobs;
  if (!full && slot.queue->batch.max_wait.count() > 0 && !unit->work_unit_key) {
    // Wait up to max_wait for more jobs: the lease is held (and heartbeated)
    // meanwhile; ticks top it up, the poll wakes at timer.
    leases_.add(unit->lease_id);
    slot.enter(Slot::State::kFilling);
    slot.timer = now + slot.queue->batch.max_wait;
    slot.unit = std::move(*unit);
    return false;
  }
  dispatch(slot, std::move(*unit), now);
  return full;
}

void Supervisor::dispatch(Slot& slot, db::ClaimedUnit unit, TimePoint now) {
  leases_.add(unit.lease_id);
  const auto max_bytes = static_cast<std::size_t>(slot.queue->batch.max_bytes);
  auto split = split_by_max_bytes(std::move(unit.jobs), max_bytes);
  unit.jobs = std::move(split.sent);
  slot.unsent = std::move(split.unsent);
  if (!slot.unsent.empty())
    spdlog::warn("{}: unit {}: {} job(s) not sent (batch.max_bytes {})", slot_name(slot), unit.lease_id,
                 slot.unsent.size(), max_bytes);
  if (unit.jobs.empty()) {
    db::UnitFinish finish = unit_finish(*slot.queue, unit);
    take_unsent(slot, finish);
    writer_->submit(std::move(finish));
    slot.enter(Slot::State::kIdle);
    return;
  }
  protocol::RunUnit run;
  run.unit_id = static_cast<std::uint64_t>(unit.lease_id);
  run.jobs.reserve(unit.jobs.size());
  for (auto& job : unit.jobs) {
    run.jobs.push_back({job.id, std::move(job.payload), std::move(job.payload_binary)});
    job.payload = std::string();
    job.payload_binary = std::string();
  }
  slot.proc->writer.push(run);
  slot.enter(Slot::State::kBusy);
  slot.timer = now + slot.queue->deadline;
  slot.unit_started = now;
  metrics_.unit_started(slot.queue->name, unit.jobs.size());
  std::vector<std::int64_t> ids;
  for (const auto& j : unit.jobs) ids.push_back(j.id);
  const util::LogScope scope(
      {util::LogField::text("queue", slot.queue->name), util::LogField::number("slot", slot.index),
       util::LogField::number("lease", unit.lease_id), util::LogField::numbers("job_ids", ids)});
  spdlog::debug("{}: unit {} with {} job(s)", slot_name(slot), unit.lease_id, unit.jobs.size());
  metrics_.unit_stage(slot.queue->name, metrics::Stage::kDispatch,
                      seconds_between(unit.claimed_at, clock_.now()));
  slot.unit = std::move(unit);
  if (!slot.proc->writer.flush_to(slot.proc->socket_fd())) {
    // The executor is gone; its exit will fail the unit.
    kill_executor(slot, now, "its socket refused the unit");
  }
}

void Supervisor::wait_for_events(TimePoint now, std::optional<milliseconds> max_wait) {
  auto until = now + settings_.worker.poll_interval;
  for (const auto& s : slots_) {
    if (s->state() == Slot::State::kWaitRestart) until = std::min(until, s->restart_at);
    if (s->state() == Slot::State::kStarting || s->state() == Slot::State::kBusy ||
        s->state() == Slot::State::kExiting || s->state() == Slot::State::kFilling)
      until = std::min(until, s->timer);
  }
  if (db_.failing()) until = std::min(until, std::max(db_.retry_at(), now));
  if (draining_) until = std::min(until, drain_deadline_);
  if (retry_wake_ <= now) retry_wake_ = TimePoint::max();  // this tick has claimed it
  until = std::min(until, retry_wake_);

  // Notifications that came in during this tick's statements are already
  // read off the socket: they would not wake the poll.
  if (jobs_notified()) until = now;

  // pollfd layout: [signal][wake][LISTEN] then two per slot with a process.
  // The LISTEN entry is -1 (ignored) while the tick's connection is down;
  // jobs that came meanwhile are claimed by the tick that reconnects.
  std::vector<pollfd> fds;
  std::vector<std::pair<Slot*, bool>> owners;  // (slot, is_socket) for fds[3..]
  fds.push_back({options_.signal_fd, POLLIN, 0});
  fds.push_back({wake_.fd(), POLLIN, 0});
  fds.push_back({db_.statements().socket(), POLLIN, 0});
  for (auto& s : slots_) {
    if (!s->proc || s->proc->reaped()) continue;
    if (s->proc->socket_fd() >= 0 && s->state() != Slot::State::kExiting) {
      short events = POLLIN;
      if (s->proc->writer.pending()) events |= POLLOUT;
      fds.push_back({s->proc->socket_fd(), events, 0});
      owners.emplace_back(s.get(), true);
    }
    fds.push_back({s->proc->pid_fd(), POLLIN, 0});
    owners.emplace_back(s.get(), false);
  }
  auto wait = std::chrono::duration_cast<milliseconds>(until - now);
  if (max_wait) wait = std::min(wait, *max_wait);
  // Round up so a deadline is not polled for repeatedly just before it passes.
  const int timeout_ms = wait.count() <= 0 ? 0 : static_cast<int>(wait.count()) + 1;
  const int n = ::poll(fds.data(), fds.size(), timeout_ms);
  const auto after = clock_.now();
  if (n > 0) {
    if (fds[0].revents & POLLIN) on_signal(after);
    if (fds[1].revents & POLLIN) wake_.drain();
    if (fds[2].revents) jobs_notified();  // consumed; the next tick claims
    for (std::size_t i = 3; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      Slot& slot = *owners[i - 3].first;
      if (owners[i - 3].second) {
        if ((fds[i].revents & POLLOUT) && slot.proc && !slot.proc->writer.flush_to(slot.proc->socket_fd()))
          kill_executor(slot, after, "its socket refused the unit");
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) on_socket(slot, after);
      } else {
        on_exit(slot, after);
      }
    }
  }
  check_timers(clock_.now());
}

bool Supervisor::jobs_notified() {
  try {
    return db_.statements().take_notifications();
  } catch (const db::DbError&) {
    // The tick's connection is gone: the next tick's statement says so and
    // reconnects (and LISTENs again).
    return true;
  }
}

void Supervisor::on_socket(Slot& slot, TimePoint now) {
  if (!slot.proc || slot.state() == Slot::State::kExiting) return;
  const auto scope = log_scope(slot);
  const bool open = slot.proc->reader.fill_from(slot.proc->socket_fd());
  for (;;) {
    auto frame = slot.proc->reader.next();
    if (frame.status == protocol::DecodeResult::Status::kNeedMore) break;
    if (frame.status == protocol::DecodeResult::Status::kMalformed) {
      spdlog::error("{} sent a malformed frame: {}", slot_name(slot), frame.error);
      abort_unit(slot, db::ErrorClass::kCrash, "executor sent a malformed frame: " + frame.error, now,
                 "malformed frame");
      return;
    }
    auto& msg = *frame.message;
    if (auto* ready = std::get_if<protocol::Ready>(&msg)) {
      if (slot.state() == Slot::State::kStarting) {
        slot.enter(Slot::State::kIdle);
        slot.was_ready = true;
        slot.start_failures = 0;
        ready_queues_.insert(slot.queue->name);
        spdlog::debug("{} ready ({})", slot_name(slot), ready->handler);
      }
    } else if (auto* result = std::get_if<protocol::UnitResult>(&msg)) {
      if (slot.state() != Slot::State::kBusy || !slot.unit ||
          result->unit_id != static_cast<std::uint64_t>(slot.unit->lease_id)) {
        spdlog::error("{} answered a unit it was not running", slot_name(slot));
        abort_unit(slot, db::ErrorClass::kCrash, "executor answered the wrong unit", now,
                   "protocol violation");
        return;
      }
      record_stages(slot, result->timing);
      finish_unit(slot, std::move(*result), now);
      if (slot.state() == Slot::State::kExiting) return;
      slot.enter(Slot::State::kIdle);
      if (draining_) {
        give_back_next(slot, "the daemon is shutting down");
      } else if (slot.retiring) {
        give_back_next(slot, "its queue was reloaded");
      } else {
        // Its own next unit, or one its queue claimed before it on another
        // slot, which would wait there behind a unit that may run to its
        // deadline. (That slot then claims ahead again.)
        take_oldest_next(slot, now);
      }
    } else if (auto* fatal = std::get_if<protocol::Fatal>(&msg)) {
      slot.fatal_message = fatal->message;
      spdlog::error("{} reports a fatal error: {}", slot_name(slot), fatal->message);
    } else {
      spdlog::error("{} sent a message only the supervisor sends", slot_name(slot));
      abort_unit(slot, db::ErrorClass::kCrash, "executor sent an unexpected message", now,
                 "protocol violation");
      return;
    }
  }
  if (!open && slot.state() == Slot::State::kFilling) {
    // The unit never reached it: back to available, attempt refunded.
    fail_unit(slot, db::ErrorClass::kRequeue, "the executor exited before the unit was sent; not run");
  }
  if (!open) {
    // It closed its end, so it is exiting: stop reading, give it a moment to
    // end by itself (its exit status names the cause), then kill it. A unit
    // it held fails in on_exit.
    slot.enter(Slot::State::kExiting);
    slot.timer = now + kExitGrace;
  }
}

void Supervisor::on_exit(Slot& slot, TimePoint now) {
  if (!slot.proc) return;
  const auto scope = log_scope(slot);
  const auto status = slot.proc->try_reap();
  if (!status) return;
  const std::string how = describe_wait_status(*status);
  give_back_next(slot, "its executor " + how + " before it ran");
  const bool exited_idle = WIFEXITED(*status) && WEXITSTATUS(*status) == protocol::kExecutorExitIdle;
  const bool refused_start = WIFEXITED(*status) && WEXITSTATUS(*status) == protocol::kExecutorExitStartup;
  if (exited_idle) {
    // On purpose, not a crash. A unit sent as it left never reached it: put
    // the jobs back without charging the attempt.
    if (slot.unit)
      fail_unit(slot, db::ErrorClass::kRequeue, "the executor exited idle as the unit was sent; not run");
    spdlog::info("{} exited after being idle for {}; it starts again when queue {} has work", slot_name(slot),
                 util::format_duration(slot.queue->idle_exit_after), slot.queue->name);
    metrics_.executor_restarted(slot.queue->name, metrics::RestartReason::kIdle);
    slot.proc.reset();
    slot.fatal_message.clear();
    slot.unit.reset();
    slot.enter(draining_ ? Slot::State::kWaitRestart : Slot::State::kStopped);
    return;
  }
  if (refused_start && !slot.was_ready && !draining_ && !slot.from_reload &&
      ready_queues_.count(slot.queue->name) == 0) {
    // The queue's set-up is wrong (its model, device or inputs): restarting
    // will not fix it, so the daemon's start-up fails, saying why.
    spdlog::critical("start-up failed: {}", slot.fatal_message.empty()
                                                ? "queue " + slot.queue->name + ": executor " + how
                                                : slot.fatal_message);
    startup_failed_ = true;
    draining_ = true;
    stop_now_ = true;
    drain_deadline_ = now;
    slot.proc.reset();
    slot.fatal_message.clear();
    slot.enter(Slot::State::kWaitRestart);
    return;
  }
  if (slot.unit && slot.state() == Slot::State::kFilling) {
    fail_unit(slot, db::ErrorClass::kRequeue, "the executor exited before the unit was sent; not run");
    spdlog::error("{} {} while its unit was filling", slot_name(slot), how);
  } else if (slot.unit) {
    if (!slot.fatal_message.empty()) {
      fail_unit(slot, db::ErrorClass::kFatal, slot.fatal_message + " (executor " + how + ")");
    } else {
      fail_unit(slot, db::ErrorClass::kCrash, "executor " + how);
    }
    spdlog::error("{} {} while running a unit", slot_name(slot), how);
  } else if (!draining_ && slot.state() != Slot::State::kExiting && slot.was_ready) {
    spdlog::warn("{} {} while idle", slot_name(slot), how);
  }
  const bool died_starting = !slot.was_ready;
  if (!draining_ && slot.count_restart) {
    const auto reason = slot.end_reason.value_or(
        slot.fatal_message.empty() ? metrics::RestartReason::kCrash : metrics::RestartReason::kFatalGpu);
    metrics_.executor_restarted(slot.queue->name, reason);
  }
  slot.end_reason.reset();
  slot.count_restart = true;
  slot.proc.reset();
  slot.fatal_message.clear();
  slot.unit.reset();
  slot.enter(Slot::State::kWaitRestart);
  if (draining_ || slot.retiring) return;  // retire_slots removes a retiring one
  if (died_starting) {
    ++slot.start_failures;
    const auto delay = util::retry_delay(slot.start_failures, kRestartBackoffBase, kRestartBackoffMax,
                                         std::uniform_real_distribution<double>(0.0, 1.0)(rng_));
    slot.restart_at = now + delay;
    spdlog::error("{}#{}: executor {} before it was ready (failure {} in a row); restarting in {}",
                  slot.queue->name, slot.index, how, slot.start_failures, util::format_duration(delay));
  } else {
    slot.restart_at = now;
  }
}

void Supervisor::check_timers(TimePoint now) {
  for (auto& s : slots_) {
    Slot& slot = *s;
    switch (slot.state()) {
      case Slot::State::kWaitRestart:
        if (!draining_ && !slot.retiring && now >= slot.restart_at) start_executor(slot, now);
        break;
      case Slot::State::kStarting:
        if (now >= slot.timer) {
          const auto scope = log_scope(slot);
          spdlog::error("{} not ready after {}", slot_name(slot), util::format_duration(kStartupTimeout));
          kill_executor(slot, now, "start-up timeout");
        }
        break;
      case Slot::State::kBusy:
        if (now >= slot.timer) {
          const auto scope = log_scope(slot);
          // Guarantee (README): a slot is never held past its deadline.
          const auto msg = "deadline exceeded after " + util::format_duration(slot.queue->deadline);
          spdlog::warn("{}: unit {} ({} job(s)): {}; killing the executor", slot_name(slot),
                       slot.unit ? slot.unit->lease_id : 0, slot.unit ? slot.unit->jobs.size() : 0, msg);
          metrics_.deadline_exceeded(slot.queue->name);
          slot.end_reason = metrics::RestartReason::kDeadline;
          abort_unit(slot, db::ErrorClass::kDeadline, msg, now, "deadline");
        }
        break;
      case Slot::State::kExiting:
        if (now >= slot.timer && slot.proc) {
          slot.proc->kill();
          slot.timer = now + kExitGrace;
        }
        break;
      case Slot::State::kIdle:
      case Slot::State::kStopped:
      case Slot::State::kFilling:  // the tick dispatches it
        break;
    }
  }
}

void Supervisor::start_executor(Slot& slot, TimePoint now) {
  const auto scope = log_scope(slot);
  std::vector<std::string> argv = {options_.executor_path, "--fd", "3", "--queue", slot.queue->name};
  if (slot.queue->is_model()) {
    // Its queue's model settings, from the daemon's file without the database.
    argv.insert(argv.end(), {"--config", slot.gen->config_path});
  } else {
    argv.insert(argv.end(), {"--handler", slot.queue->handler});
  }
  argv.insert(argv.end(), {"--parent-pid", std::to_string(::getpid())});
  // Executors together must not oversubscribe the cores.
  const auto env = executor_environment(config::executor_threads(*slot.gen->settings, *slot.queue),
                                        std::getenv("GLIBC_TUNABLES"));
  try {
    slot.proc = ExecutorProcess::spawn(argv, env);
    slot.enter(Slot::State::kStarting);
    slot.was_ready = false;
    slot.timer = now + kStartupTimeout;
  } catch (const std::exception& e) {
    ++slot.start_failures;
    const auto delay = util::retry_delay(slot.start_failures, kRestartBackoffBase, kRestartBackoffMax, 0.5);
    slot.enter(Slot::State::kWaitRestart);
    slot.restart_at = now + delay;
    spdlog::error("{}#{}: cannot start {}: {}; retrying in {}", slot.queue->name, slot.index,
                  options_.executor_path, e.what(), util::format_duration(delay));
  }
}

void Supervisor::kill_executor(Slot& slot, TimePoint now, const std::string& why) {
  if (!slot.proc) return;
  spdlog::debug("{}: killing executor: {}", slot_name(slot), why);
  slot.proc->kill();
  slot.enter(Slot::State::kExiting);
  slot.timer = now + kExitGrace;
}

RetryDelay Supervisor::retry_delay(const config::QueueSettings& queue) {
  return [this, &queue](int attempts) {
    const double jitter = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    const auto delay = util::retry_delay(attempts, queue.retry.backoff, queue.retry.max_backoff, jitter);
    // The retry is due `delay` after its failure is written, a moment from now.
    retry_wake_ = std::min(retry_wake_, clock_.now() + delay + milliseconds(10));
    return static_cast<std::int64_t>(delay.count());
  };
}

void Supervisor::record_stages(const Slot& slot, const protocol::UnitTiming& timing) {
  const std::string& queue = slot.queue->name;
  metrics_.unit_stage(queue, metrics::Stage::kDecode, static_cast<double>(timing.decode_ns) * 1e-9);
  metrics_.unit_stage(queue, metrics::Stage::kForward, static_cast<double>(timing.forward_ns) * 1e-9);
  metrics_.unit_stage(queue, metrics::Stage::kEncode, static_cast<double>(timing.encode_ns) * 1e-9);
  // The executor stamped sent_ns with its steady clock, which is this
  // host's CLOCK_MONOTONIC: so is std::chrono::steady_clock here, whatever
  // clock_ is (tests run the tick under a manual clock).
  const std::int64_t received = util::steady_ns(std::chrono::steady_clock::now());
  const auto trip = static_cast<double>(received - static_cast<std::int64_t>(timing.sent_ns)) * 1e-9;
  metrics_.unit_stage(queue, metrics::Stage::kReturn, timing.sent_ns == 0 ? 0 : trip);
}

void Supervisor::finish_unit(Slot& slot, protocol::UnitResult result, TimePoint now) {
  auto answered = answered_unit(*slot.queue, *slot.unit, std::move(result), retry_delay(*slot.queue));
  if (const auto* violation = std::get_if<std::string>(&answered)) {
    abort_unit(slot, db::ErrorClass::kCrash, *violation, now, "protocol violation");
    return;
  }
  db::UnitFinish& finish = std::get<db::UnitFinish>(answered);
  take_unsent(slot, finish);
  record_unit_end(slot);
  writer_->submit(std::move(finish));
  slot.unit.reset();
}

void Supervisor::fail_unit(Slot& slot, db::ErrorClass error_class, const std::string& message) {
  if (!slot.unit) return;
  record_unit_end(slot);
  db::UnitFinish finish =
      failed_unit(*slot.queue, *slot.unit, error_class, message, retry_delay(*slot.queue));
  take_unsent(slot, finish);
  writer_->submit(std::move(finish));
  slot.unit.reset();
  slot.enter(Slot::State::kExiting);
}

void Supervisor::abort_unit(Slot& slot, db::ErrorClass error_class, const std::string& message, TimePoint now,
                            const std::string& why) {
  if (slot.state() == Slot::State::kBusy) fail_unit(slot, error_class, message);
  kill_executor(slot, now, why);
}

void Supervisor::on_signal(TimePoint now) {
  signalfd_siginfo info[4];
  const ssize_t n = ::read(options_.signal_fd, info, sizeof info);
  const int count = n > 0 ? static_cast<int>(n / static_cast<ssize_t>(sizeof(signalfd_siginfo))) : 0;
  for (int i = 0; i < count; ++i) {
    const char* name = sigabbrev_np(static_cast<int>(info[i].ssi_signo));
    if (info[i].ssi_signo == SIGHUP) {
      reload_requested_ = true;
      continue;
    }
    if (!draining_) {
      draining_ = true;
      drain_deadline_ = now + settings_.worker.shutdown_grace;
      if (options_.on_draining) options_.on_draining();
      spdlog::info("SIG{} received: no new claims; running units have {} to finish (again to stop now)",
                   name ? name : "?", util::format_duration(settings_.worker.shutdown_grace));
    } else if (!stop_now_) {
      stop_now_ = true;
      spdlog::warn("SIG{} received again: stopping now", name ? name : "?");
    }
  }
}

int Supervisor::finish() {
  const auto now = clock_.now();
  std::vector<std::int64_t> unfinished;
  for (auto& s : slots_) {
    const auto scope = log_scope(*s);
    if (s->holds_unit() && s->unit) {
      spdlog::warn("{}: unit {} did not finish in time; releasing its {} job(s)", slot_name(*s),
                   s->unit->lease_id, s->unit->jobs.size());
      unfinished.push_back(s->unit->lease_id);
    }
    if (s->next) unfinished.push_back(s->next->lease_id);
    s->unit.reset();
    s->next.reset();
    s->proc.reset();  // kills and reaps
    s->enter(Slot::State::kWaitRestart);
  }
  if (janitor_) janitor_->stop();
  const auto bound = now + kShutdownWriteBound;
  if (!writer_->flush(bound))
    spdlog::warn("shutdown: some results were not written; their leases will expire");
  writer_->stop();
  if (heartbeater_) heartbeater_->stop();
  const auto failed = db_.run(metrics::DbOp::kRelease, [&](TickStatements& s) {
    if (!unfinished.empty()) {
      const int n = s.release(unfinished);
      spdlog::info("shutdown: released {} job(s) for other daemons", n);
    }
    for (auto lease : unfinished) leases_.remove(lease);
    s.deregister_worker(options_.worker_id);
  });
  if (failed) {
    spdlog::warn("shutdown: {}; leases left will expire after {}", failed->what(),
                 util::format_duration(settings_.worker.stale_after));
  }
  spdlog::info("worker {} stopped", options_.worker_name);
  return startup_failed_ ? 1 : 0;
}

void Supervisor::reload(TimePoint now) {
  if (!options_.reload) {
    spdlog::warn("SIGHUP: this daemon has no configuration file to re-read; ignored");
    return;
  }
  if (draining_) {
    spdlog::info("SIGHUP while shutting down: not reloading");
    return;
  }
  std::unique_ptr<Generation> gen;
  try {
    auto next = std::make_unique<config::Settings>(options_.reload());
    if (next->queues.empty()) throw config::ConfigError(next->source + ": no queues configured");
    // Sinks are checked now, as at start-up: a missing one would fail
    // every job of its queue at its completion instead.
    if (!db_.usable(now))
      throw std::runtime_error("the database is unreachable, so the sinks cannot be checked");
    std::optional<std::string> missing;
    if (const auto failed =
            db_.run(std::nullopt, [&](TickStatements& s) { missing = s.missing_sink(*next); })) {
      db_.outage(*failed, now);
      throw std::runtime_error(std::string("checking the sinks: ") + failed->what());
    }
    if (missing) throw config::ConfigError(*missing);
    gen = make_generation(*next);
    gen->owned = std::move(next);
  } catch (const std::exception& e) {
    spdlog::error("reload refused: {}; still running the configuration loaded before", e.what());
    metrics_.reload_done(false);
    return;
  }
  const auto ignored = config::restart_only_changes(settings_, *gen->settings);
  if (!ignored.empty())
    spdlog::warn("reload: {} changed: a reload applies queues and retention only; restart to apply the rest",
                 util::join(ignored));
  generations_.push_back(std::move(gen));
  apply_generation(*generations_.back(), now);
}

void Supervisor::apply_generation(Generation& gen, TimePoint now) {
  const auto& before = *generations_[generations_.size() - 2]->settings;
  const auto& after = *gen.settings;
  // Running slots: each keeps its executor (its queue unchanged), or is
  // superseded by new executors (changed), or retires (removed).
  for (auto& s : slots_) {
    Slot& slot = *s;
    if (slot.superseded || slot.retiring) continue;
    const auto* next = find_queue(after, slot.queue->name);
    if (next == nullptr) {
      slot.superseded = slot.retiring = true;
    } else if (config::same_executor_settings(*slot.queue, *next) &&
               slot.gen->file_stamps.at(next->name) == gen.file_stamps.at(next->name)) {
      slot.queue = next;
      slot.gen = &gen;
      slot.from_reload = true;
    } else {
      slot.superseded = true;
    }
  }
  std::vector<std::string> kept, changed, added, removed;
  for (const auto& q : before.queues)
    if (find_queue(after, q.name) == nullptr) removed.push_back(q.name);
  for (const auto& q : after.queues) {
    int have = 0;
    bool superseded = false;
    for (auto& s : slots_) {
      if (s->queue == &q && !s->retiring) {
        // Fewer instances: the highest-numbered executors retire.
        if (s->index >= q.instances)
          s->retiring = true;
        else
          ++have;
      }
      if (s->queue->name == q.name && s->superseded) superseded = true;
    }
    if (find_queue(before, q.name) == nullptr) {
      added.push_back(q.name);
    } else if (superseded) {
      changed.push_back(q.name);
    } else {
      kept.push_back(q.name);
    }
    // The new slots take the indexes the kept ones leave free.
    for (int i = have; i < q.instances; ++i) {
      auto slot = std::make_unique<Slot>();
      slot->queue = &q;
      slot->gen = &gen;
      slot->index = i;
      slot->from_reload = true;
      start_executor(*slot, now);
      slots_.push_back(std::move(slot));
    }
  }
  const auto names = config::queue_names(after);
  metrics_.serve_queues(names);
  metrics_.reload_done(true);
  if (janitor_) janitor_->set_targets(prune_targets(after.queues));
  if (const auto failed =
          db_.run(std::nullopt, [&](TickStatements& s) { s.set_worker_queues(options_.worker_id, names); })) {
    // Until the next reload other daemons see the old list in inferq.workers
    // (only their unserved-queue warnings read it).
    spdlog::warn("reload: could not record the served queues in inferq.workers: {}", failed->what());
  }
  spdlog::info(
      "reloaded {}: {} queue(s) kept [{}], changed [{}] (new executors; the old ones finish their unit), "
      "added [{}], removed [{}] (running units finish)",
      after.source, kept.size(), util::join(kept), util::join(changed), util::join(added),
      util::join(removed));
  if (options_.on_reloaded) options_.on_reloaded(after);
}

void Supervisor::retire_slots(TimePoint now) {
  for (auto& s : slots_) {
    Slot& slot = *s;
    if (slot.superseded && !slot.retiring) {
      const auto serving = [](const Slot& x) {
        return x.proc && (x.state() == Slot::State::kIdle || x.state() == Slot::State::kBusy ||
                          x.state() == Slot::State::kFilling);
      };
      const bool successor_ready = std::any_of(slots_.begin(), slots_.end(), [&](const auto& o) {
        return !o->superseded && o->queue->name == slot.queue->name && o->was_ready && serving(*o);
      });
      // Until then it serves on, so a queue whose new model does not load
      // keeps its old executors.
      if (successor_ready || !serving(slot)) slot.retiring = true;
    }
    if (!slot.retiring) continue;
    give_back_next(slot, "its queue was reloaded");
    if (slot.proc && (slot.state() == Slot::State::kIdle || slot.state() == Slot::State::kStarting)) {
      // No unit: nothing is lost by killing it.
      const auto scope = log_scope(slot);
      spdlog::info("{}: retired by the reload; stopping its executor", slot_name(slot));
      slot.count_restart = false;
      kill_executor(slot, now, "retired by a reload");
    }
  }
  slots_.erase(std::remove_if(slots_.begin(), slots_.end(),
                              [](const auto& s) {
                                return s->retiring && !s->proc &&
                                       (s->state() == Slot::State::kWaitRestart ||
                                        s->state() == Slot::State::kStopped);
                              }),
               slots_.end());
  drop_unused_generations();
}

void Supervisor::drop_unused_generations() {
  // Each holds a memfd, so keeping them would leak a descriptor per reload.
  const Generation* served = generations_.back().get();
  const auto unused = [&](const std::unique_ptr<Generation>& g) {
    return g.get() != served &&
           std::none_of(slots_.begin(), slots_.end(), [&](const auto& s) { return s->gen == g.get(); });
  };
  generations_.erase(std::remove_if(generations_.begin(), generations_.end(), unused), generations_.end());
}

}  // namespace inferq::supervisor
