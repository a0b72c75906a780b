#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "config/settings.hpp"
#include "db/error.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "metrics/metrics.hpp"
#include "supervisor/completion_writer.hpp"
#include "supervisor/executor_process.hpp"
#include "supervisor/heartbeater.hpp"
#include "supervisor/janitor.hpp"
#include "supervisor/lease_registry.hpp"
#include "supervisor/slot.hpp"
#include "supervisor/tick_db.hpp"
#include "supervisor/tick_statements.hpp"
#include "supervisor/unit_outcome.hpp"
#include "supervisor/unit_writer.hpp"
#include "util/clock.hpp"
#include "util/event_fd.hpp"
#include "util/fd.hpp"
#include "util/log_fields.hpp"

namespace inferq::supervisor {

struct SupervisorOptions {
  const config::Settings* settings = nullptr;
  std::string executor_path;
  std::int64_t worker_id = 0;
  std::string worker_name;
  // A signalfd for SIGTERM/SIGINT and SIGHUP: the first SIGTERM/SIGINT
  // starts a graceful shutdown, the second stops at once; SIGHUP reloads.
  // -1: none.
  int signal_fd = -1;
  // Re-reads the configuration for a reload (SIGHUP); what it throws
  // (config::ConfigError names the file and line) refuses the reload, and
  // the running configuration stays. Empty: SIGHUP is ignored.
  std::function<config::Settings()> reload;
  const util::Clock* clock = &util::SystemClock::instance();

  // Lifecycle hooks for the service manager (sd_notify), each optional and
  // called on the tick thread: they must be quick and must not throw.
  // Once, after the first tick in which the database answered and every
  // slot has an executor that said Ready (never while draining).
  std::function<void()> on_ready;
  // After every completed tick: the tick loop is alive.
  std::function<void()> on_tick;
  // Once, when a graceful shutdown starts (the first SIGTERM/SIGINT).
  std::function<void()> on_draining;
  // After a reload was applied, with the settings whose queues are served now.
  std::function<void(const config::Settings&)> on_reloaded;
  // Where the supervisor reports its metrics and health; it must outlive the
  // Supervisor. nullptr: a private instance nobody reads (tests).
  metrics::Metrics* metrics = nullptr;
  // The database. Null (the daemon): PostgreSQL at settings->database.url,
  // the tick's statements on a connection of its own and a
  // CompletionWriter. A test of the tick's logic without PostgreSQL sets
  // both (one alone is refused: std::invalid_argument); then no heartbeat
  // or janitor thread runs (they only work on the database).
  std::shared_ptr<TickStatements> statements;
  std::shared_ptr<UnitWriter> writer;
};

// The tick loop and everything it owns: the executor slots, the heartbeat,
// completion writer and janitor threads. Every tick it first reaps stale
// leases, unconditionally; then, for each idle slot, claims a unit and sends
// it to that slot's executor under the queue's deadline; then waits for an
// executor, a notification, a signal, a deadline or the poll interval.
// Nothing here waits on inference: executors are separate processes.
//
// A reload (SIGHUP) never stops a unit: a queue whose executor settings and
// model file are unchanged keeps its executors (its instances grown or
// shrunk); a changed queue gets new executors, and its old ones go on
// serving until one of the new ones is ready, then finish their unit and
// exit; a removed queue's executors finish their unit and exit. Only the
// queues (and their retention) are reloaded: database, worker, metrics and
// logging changes wait for a restart, and the reload says so.
class Supervisor {
 public:
  explicit Supervisor(SupervisorOptions options);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Runs until shutdown is complete; returns the exit code (0 after a
  // graceful or immediate shutdown; 1 when a queue's first executor refused
  // to start, e.g. its model is missing, having logged why). Blocks the
  // calling thread.
  int run();

  // run() is start(), step() until it returns false, then finish(). Tests
  // of the tick's logic call them one by one under a ManualClock; each is
  // called on the thread that ticks.
  // Starts the threads and every slot's executor.
  void start();
  // A tick; then false when the shutdown may begin (the drain is over),
  // else a wait for the next event (an executor, a notification, a signal,
  // a timer) before true. `max_wait` bounds that wait in real time: a
  // ManualClock does not move by itself, so its timers would not end it.
  bool step(std::optional<std::chrono::milliseconds> max_wait = std::nullopt);
  // Shuts down (gives back what did not finish, deregisters) and returns
  // run()'s exit code.
  int finish();
  // Each slot's state, in slot order.
  std::vector<SlotState> slot_states() const;

  // Thread-safe: makes the tick run now (jobs arrived, a unit was written).
  void wake() noexcept { wake_.notify(); }

 private:
  using TimePoint = std::chrono::steady_clock::time_point;

  // A generation for `settings`, which it does not own (set `owned` for
  // that); throws std::system_error when its executor config cannot be written.
  static std::unique_ptr<Generation> make_generation(const config::Settings& settings);

  // What the tick's reap statement did for claiming, passed on to the
  // tick's claims: the unit it claimed for the first idle slot, and a queue
  // the rest of the tick claims no more for.
  struct ReapResult {
    Slot* claimed_for = nullptr;          // the idle slot it claimed for; null: none
    std::optional<db::ClaimedUnit> unit;  // what it claimed (nullopt: nothing was due)
    // It found nothing to claim ahead for, or its claim failed on a payload
    // no job was blamed for.
    const config::QueueSettings* no_claim_for = nullptr;
  };

  void tick();
  // Re-reads the configuration and applies it (see the class comment), or
  // refuses it with the reason, keeping the running one.
  void reload(TimePoint now);
  // A reload's new slots, and its changes to the running ones, for `gen`.
  void apply_generation(Generation& gen, TimePoint now);
  // Retires the slots a reload superseded once a new executor of their
  // queue is ready (or they serve nothing), stops retiring slots once their
  // unit is done, and removes those whose executor is gone.
  void retire_slots(TimePoint now);
  // Drops the generations that no slot points into, but the served one.
  void drop_unused_generations();
  // Reaps; with a slot free (and not draining, and no unit of its queue
  // claimed ahead for it to take), the same statement claims for it, and
  // that claim is returned for claim_for_slots. With none free, it claims
  // the next unit of the first slot that wants_next(), set there at once:
  // one statement per unit instead of a reap and a claim (on the 2-core
  // machine PostgreSQL's share of the CPU at batch 1).
  ReapResult reap_stale(TimePoint now);
  // A busy slot of a queue with prefetch (and no max_wait) whose next unit
  // is not claimed yet.
  bool wants_next(const Slot& slot) const;
  void stop_lost_units(TimePoint now);
  // Puts the reap's unit on its slot first (its lease is live); then (not
  // draining) gives each other idle slot the oldest unit that a busy slot
  // of its queue claimed ahead or else claims for it, then, for each busy
  // slot that wants_next(), the unit it runs next, so that unit starts the moment
  // the current one ends instead of after a claim's round trip. A queue
  // found exhausted is not claimed for again this tick.
  void claim_for_slots(TimePoint now, ReapResult& reap);
  // Puts a claimed unit on idle `slot`: dispatched, or filling (batch.max_wait).
  // False when the queue has nothing more to claim now (no unit, or a partial one).
  bool take_unit(Slot& slot, std::optional<db::ClaimedUnit> unit, TimePoint now);
  // What claim_for did: claimed into `unit` (nullopt: none due); skipped
  // the queue for this tick (its claim failed on what it read, and the other
  // queues go on); or found the database failing (recorded; the tick backs off).
  enum class ClaimResult { kClaimed, kQueueSkipped, kDbFailed };
  // Claims a unit for `slot`'s queue into `unit`. A claim that fails on a
  // resource or program limit is a payload that cannot be sent: those jobs
  // are made dead (db::fail_unclaimable) and the claim made once more.
  ClaimResult claim_for(const Slot& slot, TimePoint now, std::optional<db::ClaimedUnit>& unit);
  // After a claim of `queue` failed with `why` (a resource limit): makes the
  // payloads that cannot be served dead. True when it made any, so the claim
  // may succeed now. Records a lost connection as a database failure.
  bool fail_unclaimable(const config::QueueSettings& queue, const db::DbError& why, TimePoint now);
  // Counts a claimed unit's jobs and their waits in the metrics, and stamps
  // its claimed_at.
  void record_claimed(const Slot& slot, db::ClaimedUnit& unit);
  // The slot of `queue` whose unit claimed ahead (next) was claimed first;
  // null when none holds one.
  Slot* oldest_next_of(const config::QueueSettings* queue) const;
  // Dispatches on idle `slot` the unit of its queue claimed ahead first,
  // its own or another slot's: one on another slot would wait for that
  // slot's unit to end (up to a deadline) while this one runs later work.
  // False when no slot of the queue holds one.
  bool take_oldest_next(Slot& slot, TimePoint now);
  // Makes `unit` (claimed ahead) busy `slot`'s next: counted, its lease heartbeated.
  void set_next(Slot& slot, db::ClaimedUnit unit);
  // Moves the outcomes of the jobs dispatch() did not send (batch.max_bytes)
  // into the unit's `finish`, so its lease is released once, with all of them.
  void take_unsent(Slot& slot, db::UnitFinish& finish);
  // Gives `slot`'s claimed-ahead unit back unrun (attempts refunded), if any.
  void give_back_next(Slot& slot, const std::string& why);
  // Starts an executor for each queue whose executors all exited idle (none
  // ready or starting) once the queue has work again.
  void start_stopped_queues(TimePoint now);
  // Tops up each filling unit (batch.max_wait) from the queue and sends it to
  // its executor once it is full, its wait is over, or the daemon drains.
  void top_up_filling_units(TimePoint now);
  // Sends `unit` to idle or filling `slot`'s executor: kBusy until the
  // queue's deadline, its lease heartbeated. The jobs over batch.max_bytes
  // stay behind in slot.unsent, written with the unit's outcome; a unit with
  // no job left to send is written at once and the slot stays kIdle.
  void dispatch(Slot& slot, db::ClaimedUnit unit, TimePoint now);
  // The wait of step(); see there for `max_wait`.
  void wait_for_events(TimePoint now, std::optional<std::chrono::milliseconds> max_wait);
  // Takes the tick connection's inferq_jobs notifications; true when there
  // were any, or when the connection was lost (a tick should run either way).
  bool jobs_notified();
  // Reads what `slot`'s executor sent: Ready (kStarting -> kIdle), the
  // unit's result (finish_unit, then kIdle and the next unit dispatched, or
  // given back while draining or retiring), Fatal (kept for on_exit). A
  // protocol violation fails the unit and kills the executor; a closed
  // socket makes the slot kExiting (a unit it held fails in on_exit).
  void on_socket(Slot& slot, TimePoint now);
  // Reaps `slot`'s executor if it has ended: an idle exit makes it kStopped
  // (a unit sent as it left is requeued, not charged); a first executor that
  // refused to start fails the daemon's start-up; otherwise its unit fails
  // (fatal with the Fatal frame's message, else crash) and the slot is
  // kWaitRestart, restarting at once or, having died before Ready, after a
  // backoff. Its claimed-ahead unit is given back either way.
  void on_exit(Slot& slot, TimePoint now);
  // What each slot's timer means in its state: kWaitRestart starts the
  // executor, kStarting kills it (no Ready in time), kBusy fails the unit on
  // its deadline and kills it, kExiting kills it again. Never waits.
  void check_timers(TimePoint now);
  // Spawns `slot`'s executor (kStarting, Ready due within kStartupTimeout),
  // or schedules the next try (kWaitRestart) when it cannot be spawned.
  void start_executor(Slot& slot, TimePoint now);
  // Observes the executor's stages of `slot`'s unit, and the result's trip back.
  void record_stages(const Slot& slot, const protocol::UnitTiming& timing);
  // Writes busy `slot`'s unit as the executor answered it (answered_unit,
  // which takes the result bodies over rather than copying them)
  // with its unsent jobs; an answer that breaks the protocol aborts it
  // instead. The slot keeps its state for the caller to change.
  void finish_unit(Slot& slot, protocol::UnitResult result, TimePoint now);
  // Writes every job of `slot`'s unit (if any) as `error_class` with
  // `message`, with its unsent jobs, and makes the slot kExiting: an
  // executor whose unit failed is not trusted with another.
  void fail_unit(Slot& slot, db::ErrorClass error_class, const std::string& message);
  // Kills `slot`'s executor (kExiting; SIGKILL again after kExitGrace).
  void kill_executor(Slot& slot, TimePoint now, const std::string& why);
  // fail_unit when `slot` is busy, then kill_executor: a deadline, or an
  // executor that broke the protocol.
  void abort_unit(Slot& slot, db::ErrorClass error_class, const std::string& message, TimePoint now,
                  const std::string& why);
  // Reads the signalfd: SIGTERM/SIGINT drain or stop, SIGHUP asks the next tick to reload.
  void on_signal(TimePoint now);
  // The backoff of `queue`'s retries, jittered; each delay it gives also
  // makes the tick wake when that retry falls due.
  RetryDelay retry_delay(const config::QueueSettings& queue);
  bool tick_alive() const;
  void announce_ready_once();
  std::string slot_name(const Slot& slot) const;
  void record_unit_end(const Slot& slot);
  // Log fields (queue, slot, executor pid, lease, job ids) for what the
  // calling code logs about `slot` while the scope lives.
  util::LogScope log_scope(const Slot& slot) const;
  void publish_slots();

  // Members by the thread that owns them, as LevelDB's db_impl.h does.

  // Set at construction, then read-only: any thread.
  SupervisorOptions options_;
  const config::Settings& settings_;
  const util::Clock& clock_;
  std::unique_ptr<metrics::Metrics> own_metrics_;  // when options.metrics is null
  metrics::Metrics& metrics_;                      // thread-safe

  // Shared with the other threads, each thread-safe; declared before the
  // threads, so they outlive them.
  LeaseRegistry leases_;  // the tick adds, the writer removes, the heartbeat renews
  util::EventFd wake_;    // any thread wakes the tick
  // A slot is busy or filling; read by the janitor's thread.
  std::atomic<bool> units_running_{false};
  std::atomic<std::int64_t> last_tick_ns_{0};  // steady clock; read by the heartbeat thread

  // The threads, each with its own connection; with SupervisorOptions'
  // database, its writer and no heartbeater or janitor (null).
  std::shared_ptr<UnitWriter> writer_;
  std::unique_ptr<Heartbeater> heartbeater_;
  std::unique_ptr<Janitor> janitor_;

  // The tick thread's alone.
  TickDb db_;                                             // the tick's connection, its backoff and db_up
  std::vector<std::unique_ptr<Generation>> generations_;  // the last one is served now
  std::vector<std::unique_ptr<Slot>> slots_;
  std::mt19937 rng_;
  bool reload_requested_ = false;  // SIGHUP came; the next tick reloads
  bool draining_ = false;
  bool stop_now_ = false;
  bool announced_ready_ = false;  // on_ready has been called
  TimePoint drain_deadline_{};
  // A queue's executor refused to start before any of the queue's executors
  // was ever ready (a bad model, device or inputs): run() returns 1.
  bool startup_failed_ = false;
  // Names, not settings: they outlive the generation that made an executor ready.
  std::set<std::string> ready_queues_;  // queues that have had a ready executor
  // When the earliest retry this daemon scheduled falls due, so the tick
  // claims it then instead of at the next poll.
  TimePoint retry_wake_ = TimePoint::max();
};

}  // namespace inferq::supervisor
