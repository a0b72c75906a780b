#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "db/session.hpp"
#include "supervisor/lease_registry.hpp"
#include "util/stop_signal.hpp"

namespace inferq::supervisor {

// The heartbeat thread: every `interval`, renews all of the daemon's leases
// in one statement, but only while `tick_alive()` says the tick loop has
// ticked recently. A stuck tick loop therefore lets its leases expire, and
// another daemon reaps them (DESIGN.md invariant 6). A lease found gone is
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
  void loop();

  db::Session session_;
  std::int64_t worker_id_;
  std::chrono::milliseconds interval_;
  LeaseRegistry& leases_;
  std::function<bool()> tick_alive_;
  std::function<void()> on_lost_;
  std::function<void()> on_db_error_;

  util::StopSignal stop_;
  std::thread thread_;
};

}  // namespace inferq::supervisor
