#include "db/listener.hpp"

#include <poll.h>

#include <cerrno>

#include "db/error.hpp"

namespace inferq::db {

Listener::Listener(std::string url, std::vector<std::string> channels, std::string application_name)
    : session_(std::move(url), std::move(application_name), std::chrono::milliseconds{0},
               std::move(channels)) {}

void Listener::connect() {
  try {
    session_.connect();
  } catch (const DbError& e) {
    throw DbError(std::string("cannot listen: ") + e.what(), e.connection_lost(), e.sqlstate());
  }
}

std::vector<Notification> Listener::wait(std::chrono::milliseconds timeout, int wake_fd) {
  connect();
  auto out = session_.take_notifications();
  if (!out.empty()) return out;
  pollfd fds[2] = {{session_.socket(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
  const int n = ::poll(fds, wake_fd >= 0 ? 2 : 1, static_cast<int>(timeout.count()));
  if (n < 0 && errno != EINTR) {
    session_.disconnect();
    throw DbError("poll on the LISTEN connection failed", true);
  }
  if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) out = session_.take_notifications();
  return out;
}

}  // namespace inferq::db
