// The sd_notify(3) datagrams the daemon sends to systemd, received by a
// socket of the test's own (a filesystem path and the abstract namespace).
#include <doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "app/sd_notify.hpp"
#include "support/test_env.hpp"
#include "util/fd.hpp"

namespace {

using inferq::app::SystemdNotifier;
using namespace std::chrono_literals;

// A bound datagram socket: "/path" or "@abstract".
inferq::util::UniqueFd bind_datagram(const std::string& name) {
  inferq::util::UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(name.size() < sizeof addr.sun_path);
  std::memcpy(addr.sun_path, name.data(), name.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  if (name[0] == '@') {
    addr.sun_path[0] = '\0';
  } else {
    len += 1;
  }
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) == 0);
  return fd;
}

// The next datagram, if one is queued (the sender's sendto has returned, so
// a message sent is already there).
std::optional<std::string> receive(int fd) {
  char buf[4096];
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0) return std::nullopt;
  return std::string(buf, static_cast<std::size_t>(n));
}

}  // namespace

TEST_CASE("an inert notifier sends nothing and says so") {
  SystemdNotifier n;
  CHECK_FALSE(n.enabled());
  CHECK_FALSE(n.notify("READY=1"));
  CHECK_FALSE(n.ready("up"));
  CHECK_FALSE(n.watchdog_timeout().has_value());
  CHECK_FALSE(n.watchdog_tick(std::chrono::steady_clock::now()));
}

TEST_CASE("messages reach a socket at a filesystem path") {
  inferq::test::TempDir dir("inferq-sdnotify");
  const std::string path = dir.file("notify");
  auto rx = bind_datagram(path);
  SystemdNotifier n(path);
  CHECK(n.enabled());
  CHECK(n.ready("running 1 queue(s)"));
  CHECK(receive(rx.get()) == std::optional<std::string>("READY=1\nSTATUS=running 1 queue(s)"));
  CHECK(n.status("waiting"));
  CHECK(receive(rx.get()) == std::optional<std::string>("STATUS=waiting"));
  CHECK(n.stopping("bye"));
  CHECK(receive(rx.get()) == std::optional<std::string>("STOPPING=1\nSTATUS=bye"));
  CHECK_FALSE(receive(rx.get()).has_value());
}

TEST_CASE("messages reach a socket in the abstract namespace ('@name')") {
  const std::string name = "@inferq-test-sdnotify-" + std::to_string(::getpid());
  auto rx = bind_datagram(name);
  SystemdNotifier n(name);
  CHECK(n.notify("READY=1"));
  CHECK(receive(rx.get()) == std::optional<std::string>("READY=1"));
}

TEST_CASE("a socket nobody listens on fails quietly, and a bad address is refused") {
  inferq::test::TempDir dir("inferq-sdnotify");
  SystemdNotifier gone(dir.file("nobody-here"));
  CHECK_FALSE(gone.notify("READY=1"));
  SystemdNotifier relative("relative/path");
  CHECK_FALSE(relative.notify("READY=1"));
  SystemdNotifier too_long("/" + std::string(200, 'x'));
  CHECK_FALSE(too_long.notify("READY=1"));
}

TEST_CASE("watchdog pings go out at half the timeout, not more often") {
  inferq::test::TempDir dir("inferq-sdnotify");
  const std::string path = dir.file("notify");
  auto rx = bind_datagram(path);
  SystemdNotifier n(path, 10s);
  REQUIRE(n.watchdog_timeout() == std::optional<std::chrono::microseconds>(10s));
  const auto t0 = std::chrono::steady_clock::time_point(100s);
  CHECK(n.watchdog_tick(t0));  // the first tick pings at once
  CHECK(receive(rx.get()) == std::optional<std::string>("WATCHDOG=1"));
  CHECK_FALSE(n.watchdog_tick(t0 + 1s));
  CHECK_FALSE(n.watchdog_tick(t0 + 4999ms));
  CHECK_FALSE(receive(rx.get()).has_value());
  CHECK(n.watchdog_tick(t0 + 5s));
  CHECK(receive(rx.get()) == std::optional<std::string>("WATCHDOG=1"));
  CHECK_FALSE(n.watchdog_tick(t0 + 9s));
  CHECK(n.watchdog_tick(t0 + 10s));

  SystemdNotifier no_watchdog(path);
  CHECK_FALSE(no_watchdog.watchdog_tick(t0));
}

TEST_CASE("from_environment reads and removes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID") {
  ::setenv("NOTIFY_SOCKET", "@inferq-env-test", 1);
  ::setenv("WATCHDOG_USEC", "2000000", 1);
  ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
  auto n = SystemdNotifier::from_environment();
  CHECK(n.enabled());
  CHECK(n.watchdog_timeout() == std::optional<std::chrono::microseconds>(2s));
  // Executors started later must not inherit them.
  CHECK(std::getenv("NOTIFY_SOCKET") == nullptr);
  CHECK(std::getenv("WATCHDOG_USEC") == nullptr);
  CHECK(std::getenv("WATCHDOG_PID") == nullptr);

  SUBCASE("a watchdog meant for another process is not ours") {
    ::setenv("NOTIFY_SOCKET", "/run/notify", 1);
    ::setenv("WATCHDOG_USEC", "2000000", 1);
    ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
    auto other = SystemdNotifier::from_environment();
    CHECK(other.enabled());
    CHECK_FALSE(other.watchdog_timeout().has_value());
  }
  SUBCASE("no socket: inert, whatever the watchdog says") {
    ::unsetenv("NOTIFY_SOCKET");
    ::setenv("WATCHDOG_USEC", "2000000", 1);
    auto none = SystemdNotifier::from_environment();
    CHECK_FALSE(none.enabled());
    CHECK_FALSE(none.watchdog_timeout().has_value());
  }
  SUBCASE("a malformed WATCHDOG_USEC is ignored") {
    ::setenv("NOTIFY_SOCKET", "/run/notify", 1);
    ::setenv("WATCHDOG_USEC", "12x", 1);
    auto bad = SystemdNotifier::from_environment();
    CHECK_FALSE(bad.watchdog_timeout().has_value());
  }
}
