#pragma once

// Private to src/db/: a bound on how long a Session waits for the server.
#include <chrono>

namespace inferq::db {

// A peer that froze mid-statement (a hung proxy, a NAT entry dropped while
// the far side still ACKs) leaves a blocking read waiting forever: its kernel
// acknowledges what was sent, so neither keepalives nor tcp_user_timeout
// fire. While a ReplyWatch lives, one process-wide thread shuts the socket
// down (both ways) once `bound` has passed; the blocked libpq call then
// fails as a lost connection and the Session reconnects. The watch is ended
// (under the thread's lock) before its owner may close the socket, so a
// reused descriptor is never shut down.
class ReplyWatch {
 public:
  // Watches `fd` for `bound`; a bound <= 0 or fd < 0 watches nothing.
  // `shut_down` is set, when the watch ends, to whether it shut the socket down.
  ReplyWatch(int fd, std::chrono::milliseconds bound, bool& shut_down);
  ~ReplyWatch();
  ReplyWatch(const ReplyWatch&) = delete;
  ReplyWatch& operator=(const ReplyWatch&) = delete;

 private:
  unsigned long long id_ = 0;  // 0: nothing watched
  bool& shut_down_;
};

}  // namespace inferq::db
