#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_set>
#include <vector>

namespace inferq::supervisor {

// The leases this daemon holds: claimed by the tick, given up once their
// completion is written (or released). The heartbeat renews exactly these,
// and the reaper spares them. Thread-safe.
class LeaseRegistry {
 public:
  void add(std::int64_t lease) {
    std::lock_guard<std::mutex> lock(mu_);
    leases_.insert(lease);
  }
  // Returns whether it was held.
  bool remove(std::int64_t lease) {
    std::lock_guard<std::mutex> lock(mu_);
    return leases_.erase(lease) != 0;
  }
  // A held lease that no longer exists in the database (reaped by another
  // daemon): stop holding it and queue it for the tick, which stops the unit
  // running under it. Returns whether it was held.
  bool mark_lost(std::int64_t lease) {
    std::lock_guard<std::mutex> lock(mu_);
    if (leases_.erase(lease) == 0) return false;
    lost_.push_back(lease);
    return true;
  }
  // The leases marked lost since the last call.
  std::vector<std::int64_t> take_lost() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::int64_t> out;
    out.swap(lost_);
    return out;
  }
  bool contains(std::int64_t lease) const {
    std::lock_guard<std::mutex> lock(mu_);
    return leases_.count(lease) != 0;
  }
  std::vector<std::int64_t> snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return {leases_.begin(), leases_.end()};
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return leases_.size();
  }

 private:
  mutable std::mutex mu_;
  std::unordered_set<std::int64_t> leases_;  // guarded by mu_
  std::vector<std::int64_t> lost_;           // guarded by mu_
};

}  // namespace inferq::supervisor
