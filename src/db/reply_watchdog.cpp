#include "db/reply_watchdog.hpp"

#include <sys/socket.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace inferq::db {
namespace {

using Clock = std::chrono::steady_clock;

class Watchdog {
 public:
  static Watchdog& instance() {
    static Watchdog w;
    return w;
  }

  unsigned long long add(int fd, Clock::time_point deadline) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) thread_ = std::thread([this] { loop(); });
    const auto id = ++next_id_;
    watches_.emplace(id, Watch{fd, deadline, false});
    cv_.notify_all();
    return id;
  }

  bool remove(unsigned long long id) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = watches_.find(id);
    if (it == watches_.end()) return false;
    const bool fired = it->second.fired;
    watches_.erase(it);
    return fired;
  }

  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  struct Watch {
    int fd;
    Clock::time_point deadline;
    bool fired;
  };

  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      auto next = Clock::time_point::max();
      const auto now = Clock::now();
      for (auto& [id, w] : watches_) {
        if (w.fired) continue;
        if (w.deadline <= now) {
          // Under the lock: the owner cannot have closed the descriptor yet.
          ::shutdown(w.fd, SHUT_RDWR);
          w.fired = true;
        } else if (w.deadline < next) {
          next = w.deadline;
        }
      }
      if (next == Clock::time_point::max()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, next);
      }
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<unsigned long long, Watch> watches_;  // guarded by mu_
  unsigned long long next_id_ = 0;               // guarded by mu_
  bool stop_ = false;                            // guarded by mu_
  std::thread thread_;
};

}  // namespace

ReplyWatch::ReplyWatch(int fd, std::chrono::milliseconds bound, bool& shut_down) : shut_down_(shut_down) {
  shut_down_ = false;
  if (fd >= 0 && bound.count() > 0) id_ = Watchdog::instance().add(fd, Clock::now() + bound);
}

ReplyWatch::~ReplyWatch() {
  if (id_ != 0) shut_down_ = Watchdog::instance().remove(id_);
}

}  // namespace inferq::db
