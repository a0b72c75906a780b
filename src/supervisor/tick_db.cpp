#include "supervisor/tick_db.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace inferq::supervisor {

TickDb::TickDb(std::shared_ptr<TickStatements> statements, std::chrono::milliseconds poll_interval,
               metrics::Metrics& metrics)
    : metrics_(metrics),
      statements_(std::move(statements)),
      backoff_(std::chrono::milliseconds(100),
               std::max<std::chrono::milliseconds>(poll_interval, std::chrono::milliseconds(1000))) {}

void TickDb::outage(const std::exception& e, TimePoint now) {
  metrics_.set_db_up(false);
  retry_at_ = now + backoff_.next();
  if (!failing_) spdlog::error("database: {}; retrying with backoff", e.what());
  failing_ = true;
}

void TickDb::succeeded() {
  metrics_.set_db_up(true);
  if (failing_) spdlog::info("database reachable again");
  failing_ = false;
  backoff_.reset();
}

}  // namespace inferq::supervisor
