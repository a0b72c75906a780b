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

void Heartbeater::start() {
  next_ = std::chrono::steady_clock::now();
  thread_.start([this] { return beat(); });
}

void Heartbeater::stop() noexcept { thread_.stop(); }

std::chrono::steady_clock::duration Heartbeater::beat() {
  next_ += interval_;
  if (const auto now = std::chrono::steady_clock::now(); next_ < now) next_ = now + interval_;
  const auto wait = [this] { return next_ - std::chrono::steady_clock::now(); };

  if (!tick_alive_()) {
    if (!was_stalled_) spdlog::error("heartbeat: the tick loop is stalled; not renewing leases");
    was_stalled_ = true;
    return wait();
  }
  if (was_stalled_) spdlog::info("heartbeat: the tick loop is alive again");
  was_stalled_ = false;

  const auto held = leases_.snapshot();
  try {
    const auto alive = db::heartbeat(session_, worker_id_, held);
    if (was_failing_) spdlog::info("heartbeat: database reachable again");
    was_failing_ = false;
    if (alive.size() < held.size()) {
      for (const auto lease : held) {
        // A lease that is gone stays gone: stop renewing it, say so once, and
        // have the tick stop its unit, whose result could not be written.
        // (A lease whose completion was just written is no longer held.)
        if (std::find(alive.begin(), alive.end(), lease) == alive.end() && leases_.mark_lost(lease)) {
          spdlog::warn("heartbeat: lease {} is gone (reaped by another daemon); stopping its unit", lease);
          if (on_lost_) on_lost_();
        }
      }
    }
  } catch (const db::DbError& e) {
    if (on_db_error_) on_db_error_();
    if (!was_failing_) spdlog::warn("heartbeat failed: {}", e.what());
    was_failing_ = true;
  }
  return wait();
}

}  // namespace inferq::supervisor
