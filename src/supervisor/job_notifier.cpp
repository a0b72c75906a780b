#include "supervisor/job_notifier.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>

#include "db/error.hpp"
#include "db/listener.hpp"
#include "util/backoff.hpp"

namespace inferq::supervisor {

JobNotifier::JobNotifier(std::string db_url, std::function<void()> on_jobs, std::function<void()> on_db_error)
    : db_url_(std::move(db_url)), on_jobs_(std::move(on_jobs)), on_db_error_(std::move(on_db_error)) {}

JobNotifier::~JobNotifier() { stop(); }

void JobNotifier::start() { thread_ = std::thread([this] { loop(); }); }

void JobNotifier::stop() noexcept {
  stop_ = true;
  stop_fd_.notify();
  if (thread_.joinable()) thread_.join();
}

void JobNotifier::loop() {
  db::Listener listener(db_url_, {"inferq_jobs"}, "inferq listener");
  util::Backoff backoff(std::chrono::milliseconds(200), std::chrono::seconds(10));
  bool was_failing = false;
  while (!stop_) {
    try {
      if (!listener.connected()) {
        // Connect before waiting: the catch-up wake below must not wait for
        // the first notification (or the 60 s timeout) after a reconnect.
        listener.connect();
        if (was_failing) spdlog::info("listener: LISTEN inferq_jobs re-established");
        was_failing = false;
        backoff.reset();
        // Jobs may have arrived while we were not listening.
        on_jobs_();
      }
      const auto got = listener.wait(std::chrono::seconds(60), stop_fd_.fd());
      if (!got.empty()) on_jobs_();
    } catch (const db::DbError& e) {
      const auto delay = backoff.next();
      if (on_db_error_) on_db_error_();
      if (!was_failing)
        spdlog::warn("listener: {}; polling meanwhile, reconnecting with backoff", e.what());
      was_failing = true;
      pollfd pfd{stop_fd_.fd(), POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(delay.count()));
    }
  }
}

}  // namespace inferq::supervisor
