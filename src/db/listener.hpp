#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "db/session.hpp"

namespace inferq::db {

// A connection that LISTENs on some channels and waits for notifications (a
// Session that does nothing else). Not thread-safe; one owner.
class Listener {
 public:
  Listener(std::string url, std::vector<std::string> channels, std::string application_name);

  // Connects and LISTENs if not connected. Throws DbError.
  void connect();
  bool connected() const noexcept { return session_.connected(); }
  void disconnect() noexcept { session_.disconnect(); }

  // Blocks until a notification arrives, `timeout` passes, or `wake_fd`
  // (if >= 0) becomes readable; returns what arrived (empty otherwise).
  // Connects first if needed. Throws DbError when the connection is lost
  // (the next call reconnects).
  std::vector<Notification> wait(std::chrono::milliseconds timeout, int wake_fd = -1);

 private:
  Session session_;
};

}  // namespace inferq::db
