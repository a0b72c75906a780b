#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace inferq::db {

struct Notification {
  std::string channel;
  std::string payload;
};

// A connection that LISTENs on some channels. Not thread-safe; one owner.
class Listener {
 public:
  Listener(std::string url, std::vector<std::string> channels, std::string application_name);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Connects and LISTENs if not connected. Throws DbError.
  void connect();
  bool connected() const noexcept;
  void disconnect() noexcept;

  // Blocks until a notification arrives, `timeout` passes, or `wake_fd`
  // (if >= 0) becomes readable; returns what arrived (empty otherwise).
  // Connects first if needed. Throws DbError when the connection is lost
  // (the next call reconnects).
  std::vector<Notification> wait(std::chrono::milliseconds timeout, int wake_fd = -1);

 private:
  struct Impl;
  std::string url_;
  std::vector<std::string> channels_;
  std::string application_name_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace inferq::db
