#include "supervisor/heartbeater.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "db/error.hpp"
#include "db/queue_ops.hpp"

namespace inferq::supervisor {

Heartbeater::Heartbeater(std::string db_url, std::int64_t worker_id, std::chrono::milliseconds interval,
                         LeaseRegistry& leases, std::function<bool()> tick_alive,
                         std::function<void()> on_lost, std::function<void()> on_db_error)
    : session_(std::move(db_url), "inferq heartbeat", std::max(interval, std::chrono::milliseconds(1000))),
      worker_id_(worker_id),
      interval_(interval),
      leases_(leases),
      tick_alive_(std::move(tick_alive)),
      on_lost_(std::move(on_lost)),
      on_db_error_(std::move(on_db_error)) {}

Heartbeater::~Heartbeater() { stop(); }

void Heartbeater::start() { thread_ = std::thread([this] { loop(); }); }

void Heartbeater::stop() noexcept {
  stop_.stop();
  if (thread_.joinable()) thread_.join();
}

void Heartbeater::loop() {
  bool was_failing = false;
  bool was_stalled = false;
  auto next = std::chrono::steady_clock::now();
  for (;;) {
    if (stop_.wait_until(next)) return;
    next += interval_;
    const auto now = std::chrono::steady_clock::now();
    if (next < now) next = now + interval_;

    if (!tick_alive_()) {
      if (!was_stalled) spdlog::error("heartbeat: the tick loop is stalled; not renewing leases");
      was_stalled = true;
      continue;
    }
    if (was_stalled) spdlog::info("heartbeat: the tick loop is alive again");
    was_stalled = false;

    const auto held = leases_.snapshot();
    try {
      const auto alive = db::heartbeat(session_, worker_id_, held);
      if (was_failing) spdlog::info("heartbeat: database reachable again");
      was_failing = false;
      if (alive.size() < held.size()) {
        for (const auto lease : held) {
          // A lease that is gone stays gone: stop renewing it, say so once, and
          // have the tick stop its unit, whose result could not be written.
          // (A lease whose completion was just written is no longer held.)
          if (std::find(alive.begin(), alive.end(), lease) == alive.end() && leases_.mark_lost(lease)) {
            spdlog::warn("heartbeat: lease {} is gone (reaped by another daemon); stopping its unit",
                         lease);
            if (on_lost_) on_lost_();
          }
        }
      }
    } catch (const db::DbError& e) {
      if (on_db_error_) on_db_error_();
      if (!was_failing) spdlog::warn("heartbeat failed: {}", e.what());
      was_failing = true;
    }
  }
}

}  // namespace inferq::supervisor
