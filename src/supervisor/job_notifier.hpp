#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <atomic>
#include <thread>

#include "util/event_fd.hpp"

namespace inferq::supervisor {

// The LISTEN thread: waits for `inferq_jobs` notifications and calls
// on_jobs() for each batch, so the tick claims at once instead of at its next
// poll. If the connection is lost it reconnects with backoff; meanwhile the
// tick keeps working on its poll interval.
class JobNotifier {
 public:
  JobNotifier(std::string db_url, std::function<void()> on_jobs,
              std::function<void()> on_db_error = {});  // each lost LISTEN connection (metrics)
  ~JobNotifier();
  JobNotifier(const JobNotifier&) = delete;
  JobNotifier& operator=(const JobNotifier&) = delete;

  void start();
  void stop() noexcept;  // idempotent; returns promptly even mid-wait

 private:
  void loop();

  std::string db_url_;
  std::function<void()> on_jobs_;
  std::function<void()> on_db_error_;
  util::EventFd stop_fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace inferq::supervisor
