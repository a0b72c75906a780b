#include "db/listener.hpp"

#include <poll.h>

#include <cerrno>

#include "db/error.hpp"
#include "db/raw.hpp"
#include "db/session.hpp"

namespace inferq::db {
namespace {

class Receiver : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& c, const std::string& channel, std::vector<Notification>& sink)
      : pqxx::notification_receiver(c, channel), sink_(sink) {}
  void operator()(const std::string& payload, int /*backend_pid*/) override {
    sink_.push_back({channel(), payload});
  }

 private:
  std::vector<Notification>& sink_;
};

}  // namespace

struct Listener::Impl {
  explicit Impl(const std::string& url) : conn(url) {}
  pqxx::connection conn;
  std::vector<Notification> pending;
  std::vector<std::unique_ptr<Receiver>> receivers;
};

Listener::Listener(std::string url, std::vector<std::string> channels, std::string application_name)
    : url_(std::move(url)), channels_(std::move(channels)), application_name_(std::move(application_name)) {}

Listener::~Listener() = default;

bool Listener::connected() const noexcept { return impl_ != nullptr; }

void Listener::disconnect() noexcept { impl_.reset(); }

void Listener::connect() {
  if (impl_) return;
  try {
    auto impl = std::make_unique<Impl>(url_);
    {
      pqxx::nontransaction tx(impl->conn);
      tx.exec_params("SELECT set_config('application_name', $1, false)", application_name_);
    }
    for (const auto& ch : channels_)
      impl->receivers.push_back(std::make_unique<Receiver>(impl->conn, ch, impl->pending));
    // Receivers LISTEN lazily on the next round trip; force it now so no
    // notification sent after connect() returns is missed.
    impl->conn.get_notifs();
    {
      pqxx::nontransaction tx(impl->conn);
      tx.exec("SELECT 1");
    }
    impl_ = std::move(impl);
  } catch (const std::exception& e) {
    throw DbError(std::string("cannot listen at ") + redact_url(url_) + ": " + e.what(), true);
  }
}

std::vector<Notification> Listener::wait(std::chrono::milliseconds timeout, int wake_fd) {
  connect();
  std::vector<Notification> out;
  try {
    impl_->conn.get_notifs();
    if (impl_->pending.empty()) {
      pollfd fds[2] = {{impl_->conn.sock(), POLLIN, 0}, {wake_fd, POLLIN, 0}};
      const int n = ::poll(fds, wake_fd >= 0 ? 2 : 1, static_cast<int>(timeout.count()));
      if (n < 0 && errno != EINTR) throw DbError("poll on the LISTEN connection failed", true);
      if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) impl_->conn.get_notifs();
    }
    out.swap(impl_->pending);
  } catch (const DbError&) {
    impl_.reset();
    throw;
  } catch (const std::exception& e) {
    impl_.reset();
    throw DbError(std::string("LISTEN connection lost: ") + e.what(), true);
  }
  return out;
}

}  // namespace inferq::db
