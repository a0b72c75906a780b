#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/settings.hpp"
#include "db/queue_ops.hpp"
#include "metrics/metrics.hpp"
#include "supervisor/executor_process.hpp"
#include "util/fd.hpp"

namespace inferq::supervisor {

// A configuration whose queues slots run: the start-up one, then one per
// applied reload. The supervisor keeps it while a slot points into it, and
// the served one.
struct Generation {
  std::unique_ptr<config::Settings> owned;  // null for the start-up settings
  const config::Settings* settings = nullptr;
  // What its model executors read as their config (config::executor_document:
  // no database section), in a memfd of this process that they open as
  // /proc/PID/fd/N; empty path: no model queue.
  util::UniqueFd config_fd;
  std::string config_path;
  // Per queue, its model file and libraries as they were at load (device,
  // inode, size, mtime): a reload gives a queue whose files changed new executors.
  std::map<std::string, std::string> file_stamps;
};

// What a slot's executor is doing. Only kIdle, kBusy and kFilling have a
// process that serves; kWaitRestart and kStopped have none.
enum class SlotState : unsigned {
  kWaitRestart,  // no process; start at restart_at
  kStarting,     // spawned, waiting for Ready until `timer`
  kIdle,         // ready for a unit
  kBusy,         // running `unit` until `timer` (its deadline)
  kExiting,      // killed or closed; waiting for the process to end (killed again at `timer`)
  kStopped,      // its executor exited idle; started again when the queue has work
  kFilling,      // holds a partial `unit` (lease live) until it is full or `timer` (max_wait) passes
};

constexpr unsigned slot_state_bit(SlotState s) { return 1u << static_cast<unsigned>(s); }
constexpr unsigned kAnySlotState = (1u << 7) - 1;

// Every change of state a slot may make, and what makes it: Slot::enter
// refuses any other. `from` is a set of states (slot_state_bit).
struct SlotTransition {
  unsigned from;
  SlotState to;
  const char* by;
};
inline constexpr SlotTransition kSlotTransitions[] = {
    {slot_state_bit(SlotState::kWaitRestart) | slot_state_bit(SlotState::kStopped), SlotState::kStarting,
     "start_executor: spawned (a stopped one when its queue has work again)"},
    {slot_state_bit(SlotState::kStarting), SlotState::kIdle, "on_socket: the executor said Ready"},
    {slot_state_bit(SlotState::kIdle), SlotState::kFilling,
     "take_unit: a partial unit waits up to batch.max_wait for more jobs"},
    {slot_state_bit(SlotState::kIdle) | slot_state_bit(SlotState::kFilling), SlotState::kBusy,
     "dispatch: the unit was sent to the executor"},
    {slot_state_bit(SlotState::kIdle) | slot_state_bit(SlotState::kFilling), SlotState::kIdle,
     "dispatch: no job could be sent (batch.max_bytes); stop_lost_units: a filling unit's lease was reaped"},
    {slot_state_bit(SlotState::kBusy), SlotState::kIdle, "on_socket: the unit's result came"},
    {slot_state_bit(SlotState::kStarting) | slot_state_bit(SlotState::kIdle) |
         slot_state_bit(SlotState::kBusy) | slot_state_bit(SlotState::kFilling) |
         slot_state_bit(SlotState::kExiting),
     SlotState::kExiting, "kill_executor, fail_unit, or on_socket: the executor closed its socket"},
    {kAnySlotState, SlotState::kWaitRestart, "on_exit, a failed spawn, or shutdown: no process"},
    {kAnySlotState, SlotState::kStopped, "on_exit: the executor exited idle (idle_exit_after)"},
};

constexpr bool slot_may_enter(SlotState from, SlotState to) {
  for (const auto& t : kSlotTransitions)
    if ((t.from & slot_state_bit(from)) != 0 && t.to == to) return true;
  return false;
}

const char* slot_state_name(SlotState s);

// One executor slot of a queue: its process, the unit it runs, and the
// state that says which of those it has. Owned and used by the tick thread only.
struct Slot {
  using State = SlotState;
  using TimePoint = std::chrono::steady_clock::time_point;

  State state() const { return state_; }
  // kBusy or kFilling: it holds a claimed unit whose lease is live.
  bool holds_unit() const { return state_ == State::kBusy || state_ == State::kFilling; }
  // Moves to `to`. Throws std::logic_error (a supervisor bug) when
  // kSlotTransitions has no such change.
  void enter(State to);

  const config::QueueSettings* queue = nullptr;
  const Generation* gen = nullptr;  // the configuration `queue` is from
  int index = 0;
  // A reload made or changed it: failing to start does not fail the daemon.
  bool from_reload = false;
  // A reload changed or removed its queue: it serves on until a new
  // executor of the queue is ready, then retires.
  bool superseded = false;
  // It claims nothing more; its executor is stopped once its unit is done,
  // and the slot removed once the executor is gone.
  bool retiring = false;
  std::unique_ptr<ExecutorProcess> proc;
  bool was_ready = false;  // the current process said Ready
  int start_failures = 0;  // consecutive deaths before Ready
  TimePoint restart_at{};  // kWaitRestart
  // kStarting: ready deadline; kBusy: unit deadline; kExiting: kill time; kFilling: end of max_wait
  TimePoint timer{};
  std::optional<db::ClaimedUnit> unit;  // kBusy, kFilling
  // kBusy: the unit claimed ahead (queue prefetch), its lease live and
  // heartbeated; dispatched the moment `unit` ends, so the executor does not
  // wait for a claim's round trip. Given back unrun if the executor ends.
  std::optional<db::ClaimedUnit> next;
  // kBusy: the unit's jobs that were not sent (batch.max_bytes), with the
  // outcome they are written with when the unit ends.
  std::vector<db::JobFinish> unsent;
  std::string fatal_message;  // from a Fatal frame, until the process ends
  TimePoint unit_started{};   // kBusy: when the unit was dispatched
  // Why the current process is ending, for inferq_executor_restarts_total:
  // set where the supervisor decides it (deadline; idle exit and fatal GPU
  // errors by their code paths); unset means it died by itself (crash, or
  // fatal_gpu when it sent a Fatal frame). count_restart = false: the end
  // is not a restart worth counting (its lease was lost).
  std::optional<metrics::RestartReason> end_reason;
  bool count_restart = true;

 private:
  State state_ = State::kWaitRestart;
};

}  // namespace inferq::supervisor
