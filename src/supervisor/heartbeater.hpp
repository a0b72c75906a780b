#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "db/session.hpp"
#include "supervisor/lease_registry.hpp"
#include "util/periodic_thread.hpp"

namespace inferq::supervisor {

// The heartbeat thread: every `interval`, renews all of the daemon's leases
// in one statement, but only while `tick_alive()` says the tick loop has
// ticked recently. A stuck tick loop therefore lets its leases expire, and
// another daemon reaps them (README guarantee "heartbeats prove the tick
// loop is alive"). A lease found gone is
// marked lost in the registry and on_lost() is called.
class Heartbeater {
 public:
  Heartbeater(std::string db_url, std::int64_t worker_id, std::chrono::milliseconds interval,
              LeaseRegistry& leases, std::function<bool()> tick_alive, std::function<void()> on_lost,
              std::function<void()> on_db_error = {});  // each failed heartbeat (metrics)
  ~Heartbeater();
  Heartbeater(const Heartbeater&) = delete;
  Heartbeater& operator=(const Heartbeater&) = delete;

  void start();
  void stop() noexcept;  // idempotent

 private:
  // One heartbeat; returns the wait before the next (every `interval` from
  // the start, or from now after a heartbeat that took longer).
  std::chrono::steady_clock::duration beat();

  db::Session session_;
  std::int64_t worker_id_;
  std::chrono::milliseconds interval_;
  LeaseRegistry& leases_;
  std::function<bool()> tick_alive_;
  std::function<void()> on_lost_;
  std::function<void()> on_db_error_;

  // The thread's own:
  std::chrono::steady_clock::time_point next_{};
  bool was_failing_ = false;
  bool was_stalled_ = false;

  util::PeriodicThread thread_;
};

}  // namespace inferq::supervisor
