// Issue 13 item 6: a peer that froze in the middle of a statement (a hung
// proxy: its kernel still ACKs, so neither keepalives nor tcp_user_timeout
// fire) no longer holds a Session's call forever. The client shuts the socket
// down after reply_bound(statement_timeout), the call fails as a lost
// connection, and the next call reconnects. A real PostgreSQL behind a TCP
// proxy that can freeze.
#include <doctest.h>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "db/error.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/migrated_database.hpp"
#include "support/test_env.hpp"

namespace {

using namespace std::chrono_literals;

// Forwards 127.0.0.1:port to 127.0.0.1:target both ways. Frozen, it neither
// accepts, reads nor writes, and keeps every socket open: what the client
// sends is ACKed by the kernel and no reply ever comes.
class FreezableProxy {
 public:
  explicit FreezableProxy(int target) : target_(target), listen_fd_(inferq::test::listen_on_loopback(port)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~FreezableProxy() {
    stop_ = true;
    thread_.join();
    for (const auto& [fd, peer] : peers_) ::close(fd);
    ::close(listen_fd_);
  }
  void freeze(bool on) { frozen_ = on; }
  int port = 0;

 private:
  void loop() {
    while (!stop_) {
      if (frozen_) {
        std::this_thread::sleep_for(20ms);
        continue;
      }
      std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
      for (const auto& [fd, peer] : peers_) fds.push_back({fd, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (frozen_) continue;
      if (fds[0].revents & POLLIN) accept_one();
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const auto it = peers_.find(fds[i].fd);
        if (it == peers_.end()) continue;
        char buf[65536];
        const ssize_t n = ::read(it->first, buf, sizeof buf);
        if (n <= 0) {
          drop(it->first);
          continue;
        }
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = ::write(it->second, buf + off, static_cast<std::size_t>(n - off));
          if (w <= 0) break;
          off += w;
        }
      }
    }
  }
  void accept_one() {
    const int client = ::accept(listen_fd_, nullptr, nullptr);
    if (client < 0) return;
    const int server = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(target_));
    if (::connect(server, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(client);
      ::close(server);
      return;
    }
    peers_[client] = server;
    peers_[server] = client;
  }
  void drop(int fd) {
    const int peer = peers_[fd];
    peers_.erase(fd);
    peers_.erase(peer);
    ::close(fd);
    ::close(peer);
  }

  int target_;
  int listen_fd_;
  std::map<int, int> peers_;  // the proxy thread's own
  std::atomic<bool> frozen_{false};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// postgresql://user@127.0.0.1:PORT/db... with the port replaced by `port`.
std::string through(const std::string& url, int port) {
  return std::regex_replace(url, std::regex(R"(@127\.0\.0\.1:\d+/)"),
                            "@127.0.0.1:" + std::to_string(port) + "/");
}

int port_of(const std::string& url) {
  std::smatch m;
  REQUIRE(std::regex_search(url, m, std::regex(R"(@127\.0\.0\.1:(\d+)/)")));
  return std::stoi(m[1].str());
}

// One statement through `session` (any read of the daemon's will do): 1 when it ran.
int select_one(inferq::db::Session& session) {
  return inferq::db::has_available_work(session, "none") ? 2 : 1;
}

}  // namespace

TEST_CASE("reply_bound is twice the statement timeout, at least 10 s past it; none without one") {
  using inferq::db::reply_bound;
  CHECK(reply_bound(30s) == 60s);
  CHECK(reply_bound(1s) == 11s);
  CHECK(reply_bound(10min) == 20min);
  CHECK(reply_bound(0ms) == 0ms);
}

TEST_CASE("a peer frozen mid-statement fails the call within reply_bound, and the next call reconnects") {
  const std::string url = inferq::test::migrated_database();
  FreezableProxy proxy(port_of(url));
  inferq::db::Session session(through(url, proxy.port), "frozen peer test", 1s);  // bound: 11 s
  REQUIRE(select_one(session) == 1);

  proxy.freeze(true);
  const auto t0 = std::chrono::steady_clock::now();
  auto call = std::async(std::launch::async, [&] {
    try {
      select_one(session);
      return std::string("(returned)");
    } catch (const inferq::db::DbError& e) {
      return std::string(e.connection_lost() ? "lost: " : "error: ") + e.what();
    }
  });
  const bool ended = call.wait_for(30s) == std::future_status::ready;
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  proxy.freeze(false);  // without the bound, this is what ends the call
  const std::string outcome = call.get();
  CAPTURE(outcome);
  REQUIRE(ended);
  CHECK(outcome.rfind("lost: no reply from the server within 11000 ms", 0) == 0);
  CHECK(s >= 10.5);
  CHECK(s < 16.0);

  // Healed: the next call connects again.
  CHECK(select_one(session) == 1);
}
