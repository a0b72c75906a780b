#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace inferq::util {

// A one-way "stop" flag that a periodic thread sleeps on: stop() wakes every
// waiter at once, so a thread between rounds never delays shutdown.
class StopSignal {
 public:
  // Sets the flag and wakes the waiters. Idempotent, thread-safe.
  void stop() noexcept {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
  }

  // Blocks until `deadline` or stop(), whichever is first. Returns true when
  // stopped.
  template <typename Clock, typename Duration>
  bool wait_until(std::chrono::time_point<Clock, Duration> deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return stopped_; });
  }

  bool stopped() {
    std::lock_guard<std::mutex> lock(mu_);
    return stopped_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;  // guarded by mu_
};

}  // namespace inferq::util
