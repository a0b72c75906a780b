#pragma once

#include <chrono>
#include <functional>
#include <thread>
#include <utility>

#include "util/stop_signal.hpp"

namespace inferq::util {

// A background thread that runs a round of work, waits what the round asks,
// and runs it again until stop(): the one loop of the samplers and the
// heartbeat. stop() wakes the wait at once, so shutdown never waits out an
// interval; a round in progress finishes first.
class PeriodicThread {
 public:
  using Round = std::function<std::chrono::steady_clock::duration()>;

  PeriodicThread() = default;
  ~PeriodicThread() { stop(); }
  PeriodicThread(const PeriodicThread&) = delete;
  PeriodicThread& operator=(const PeriodicThread&) = delete;

  // Starts the thread: `round` runs at once, then again each time the wait
  // it returned has passed. Call once.
  void start(Round round) {
    thread_ = std::thread([this, round = std::move(round)] {
      while (!stop_.stopped()) {
        const auto wait = round();
        if (stop_.wait_until(std::chrono::steady_clock::now() + wait)) return;
      }
    });
  }

  // Idempotent, thread-safe; returns once the thread has ended.
  void stop() noexcept {
    stop_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  StopSignal stop_;
  std::thread thread_;
};

}  // namespace inferq::util
