#pragma once
// Reading the NOTIFYs of inferq.enqueue, complete, reap and release through
// db::Listener without waiting a fixed time for them.

#include <string>
#include <vector>

#include "db/listener.hpp"

namespace inferq::test {

// Everything delivered to `listener` (which listens on inferq_jobs) before
// a marker that this commits now on a connection of its own to `url`:
// notifications arrive in commit order, so this is everything committed
// before the call. Blocks until the marker arrives; throws after 10 s.
std::vector<db::Notification> drain(const std::string& url, db::Listener& listener);

// How many of `got` are on `channel` with `payload`.
int count_of(const std::vector<db::Notification>& got, const std::string& channel,
             const std::string& payload);

}  // namespace inferq::test
