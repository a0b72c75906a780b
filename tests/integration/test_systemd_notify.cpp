// `inferq run` under a service manager: the real daemon, with NOTIFY_SOCKET
// pointing at a datagram socket this test owns, must say READY=1 only once
// the database answers and every executor is ready, ping the watchdog from
// its tick loop, and say STOPPING=1 when SIGTERM starts the shutdown. The
// executors are held back by a gate (a wrapper script that waits for a file
// before it execs the real inferq-executor), so "not ready yet" is a state
// the test controls, not a race it hopes to win.
#include <doctest.h>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/daemon.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// The socket systemd would own: every datagram the daemon sends, in order.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof addr.sun_path);
    std::strcpy(addr.sun_path, path.c_str());
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~NotifySocket() { ::close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }

  // Every message received so far (reads what is queued first).
  const std::vector<std::string>& messages() {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n < 0) break;
      messages_.emplace_back(buf, static_cast<std::size_t>(n));
    }
    return messages_;
  }
  // How many messages so far have a line `line` (e.g. "READY=1").
  std::size_t count(const std::string& line) {
    const auto& all = messages();
    return static_cast<std::size_t>(std::count_if(all.begin(), all.end(), [&](const std::string& m) {
      std::istringstream in(m);
      for (std::string l; std::getline(in, l);)
        if (l == line) return true;
      return false;
    }));
  }
  // The whole message with a line `line`, or "" when none came.
  std::string first_with(const std::string& line) {
    for (const auto& m : messages())
      if (("\n" + m + "\n").find("\n" + line + "\n") != std::string::npos) return m;
    return "";
  }
  // Index of the first message with line `line`; messages().size() when none.
  std::size_t index_of(const std::string& line) {
    const auto& all = messages();
    for (std::size_t i = 0; i < all.size(); ++i)
      if (("\n" + all[i] + "\n").find("\n" + line + "\n") != std::string::npos) return i;
    return all.size();
  }
  // Polls until count(line) >= n or `timeout`.
  bool wait_count(const std::string& line, std::size_t n, std::chrono::milliseconds timeout) {
    return wait_until([&] { return count(line) >= n; }, timeout);
  }
  std::string dump() {
    std::string out;
    for (const auto& m : messages()) out += "[" + m + "] ";
    return out;
  }

 private:
  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
};

// Sets environment variables for the children started while it lives: the
// harness's ChildProcess passes this process's environment on. Scoped, so
// the PostgreSQL servers the tests start (built with systemd support) never
// see NOTIFY_SOCKET.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::vector<std::pair<std::string, std::string>> vars) : vars_(std::move(vars)) {
    for (const auto& [k, v] : vars_) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& kv : vars_) ::unsetenv(kv.first.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::string>> vars_;
};

// An executor wrapper that waits for `gate` to exist, then execs the real
// inferq-executor with the same arguments (and descriptors).
std::string gated_executor(const TempDir& dir, const std::string& gate) {
  const std::string path = dir.file("gated-executor");
  std::ofstream out(path);
  out << "#!/bin/sh\n"
      << "while [ ! -e '" << gate << "' ]; do sleep 0.05; done\n"
      << "exec '" << bin_path("inferq-executor") << "' \"$@\"\n";
  out.close();
  REQUIRE(::chmod(path.c_str(), 0755) == 0);
  return path;
}

void open_gate(const std::string& gate) { std::ofstream(gate) << "open\n"; }

std::size_t ready_lines(const Daemon& d) {
  const std::string log = d.log();
  std::size_t n = 0;
  for (auto pos = log.find(") ready ("); pos != std::string::npos; pos = log.find(") ready (", pos + 1)) ++n;
  return n;
}

std::string environ_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ");
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  std::replace(text.begin(), text.end(), '\0', '\n');
  return text;
}

}  // namespace

TEST_CASE(
    "READY=1 only after every executor is ready; WATCHDOG=1 from the tick loop; STOPPING=1 on SIGTERM") {
  const std::string url = fresh_inferq_database();
  TempDir dir("inferq-sdnotify");
  NotifySocket sock(dir.file("notify"));
  const std::string gate = dir.file("gate");
  auto cfg = daemon_config(url, {test_queue("echo", "builtin:echo", 2, 4)});
  cfg.executor_path = gated_executor(dir, gate);
  cfg.poll_interval = "200ms";

  // 1 s watchdog: a ping at least every 500 ms; ticks are at most 200 ms apart.
  ScopedEnv env({{"NOTIFY_SOCKET", sock.path()}, {"WATCHDOG_USEC", "1000000"}});
  Daemon d(cfg, "sdnotify");

  // The tick loop runs (it pings the watchdog) with the database reachable,
  // but the executors are held at the gate: no READY.
  REQUIRE_MESSAGE(sock.wait_count("WATCHDOG=1", 3, 20s), sock.dump(), "\n", d.log());
  CHECK(contains(d.log(), "started as worker"));
  CHECK(ready_lines(d) == 0);
  CHECK_MESSAGE(sock.count("READY=1") == 0, sock.dump());
  CHECK(contains(sock.dump(), "STATUS=connecting to the database"));
  CHECK(contains(sock.dump(), "STATUS=starting 2 executor(s)"));

  open_gate(gate);
  REQUIRE_MESSAGE(sock.wait_count("READY=1", 1, 20s), sock.dump(), "\n", d.log());
  // Both executors had said Ready (logged before the tick announced it).
  CHECK_MESSAGE(ready_lines(d) == 2, d.log());
  CHECK(contains(sock.first_with("READY=1"), "STATUS=running 1 queue(s) with 2 executor(s) as worker "));
  CHECK(contains(d.log(), "(READY=1 sent to systemd)"));

  // Pings keep coming while the loop is healthy, after READY too.
  const std::size_t pings = sock.count("WATCHDOG=1");
  REQUIRE_MESSAGE(sock.wait_count("WATCHDOG=1", pings + 3, 20s), sock.dump());

  // It still works (READY meant it), and the executors did not inherit the
  // notification socket: only the main process talks to systemd.
  const auto id = enqueue(url, "echo", R"({"n": 1})");
  REQUIRE_MESSAGE(wait_until([&] { return job(url, id)->state == "succeeded"; }, 10s), d.log());
  const auto pids = d.executor_pids();
  REQUIRE(pids.size() == 2);
  for (const pid_t pid : pids) {
    const std::string e = environ_of(pid);
    REQUIRE_FALSE(e.empty());
    CHECK_FALSE(contains(e, "NOTIFY_SOCKET="));
    CHECK_FALSE(contains(e, "WATCHDOG_USEC="));
  }

  CHECK(sock.count("STOPPING=1") == 0);
  const auto status = d.terminate(20s);
  REQUIRE_MESSAGE(status.has_value(), d.log());
  CHECK(exited_with(*status, 0));
  CHECK(sock.count("STOPPING=1") == 1);
  CHECK(contains(sock.first_with("STOPPING=1"), "STATUS=stopping: running units have 5s to finish"));
  CHECK(sock.count("READY=1") == 1);  // once
  CHECK(sock.index_of("READY=1") < sock.index_of("STOPPING=1"));
}

TEST_CASE("database down at start-up: no READY while the daemon retries, READY once it is up") {
  PgCluster pg;
  pg.start();  // the port is fixed at the first start
  const std::string url = pg.create_database();
  migrate_with_cli(url);
  pg.stop();

  TempDir dir("inferq-sdnotify");
  NotifySocket sock(dir.file("notify"));
  auto cfg = daemon_config(url, {test_queue("echo", "builtin:echo", 1, 4)});
  std::optional<Daemon> d;
  {
    ScopedEnv env({{"NOTIFY_SOCKET", sock.path()}, {"WATCHDOG_USEC", "1000000"}});
    d.emplace(cfg, "sdnotify-db-down");
  }
  REQUIRE_MESSAGE(d->process().wait_log("(attempt 3)", 20s), d->log());
  CHECK_MESSAGE(sock.count("READY=1") == 0, sock.dump());
  CHECK_MESSAGE(contains(sock.dump(), "STATUS=waiting for the database (attempt 3)"), sock.dump());

  pg.start();
  REQUIRE_MESSAGE(sock.wait_count("READY=1", 1, 30s), sock.dump(), "\n", d->log());
  CHECK(contains(d->log(), "started as worker"));
  const auto status = d->terminate(20s);
  REQUIRE(status.has_value());
  CHECK(exited_with(*status, 0));
  CHECK(sock.count("STOPPING=1") == 1);
}

TEST_CASE("database lost before the executors are ready: no READY until the tick reaches it again") {
  PgCluster pg;
  pg.start();
  const std::string url = pg.create_database();
  migrate_with_cli(url);

  TempDir dir("inferq-sdnotify");
  NotifySocket sock(dir.file("notify"));
  const std::string gate = dir.file("gate");
  auto cfg = daemon_config(url, {test_queue("echo", "builtin:echo", 1, 4)});
  cfg.executor_path = gated_executor(dir, gate);
  std::optional<Daemon> d;
  {
    // 400 ms watchdog: a ping every 200 ms, i.e. about every tick.
    ScopedEnv env({{"NOTIFY_SOCKET", sock.path()}, {"WATCHDOG_USEC", "400000"}});
    d.emplace(cfg, "sdnotify-db-lost");
  }
  REQUIRE_MESSAGE(d->process().wait_log("started as worker", 20s), d->log());
  pg.stop();
  // The tick has seen the database fail ...
  REQUIRE_MESSAGE(d->process().wait_log("retrying with backoff", 20s), d->log());
  // ... and then the executors become ready.
  open_gate(gate);
  REQUIRE_MESSAGE(wait_until([&] { return ready_lines(*d) == 1; }, 20s), d->log());
  // Several ticks later (each pings the watchdog), still no READY.
  const std::size_t pings = sock.count("WATCHDOG=1");
  REQUIRE_MESSAGE(sock.wait_count("WATCHDOG=1", pings + 5, 20s), sock.dump(), "\n", d->log());
  CHECK_MESSAGE(sock.count("READY=1") == 0, sock.dump(), "\n", d->log());

  pg.start();
  REQUIRE_MESSAGE(sock.wait_count("READY=1", 1, 30s), sock.dump(), "\n", d->log());
  CHECK(contains(d->log(), "database reachable again"));
  const auto status = d->terminate(20s);
  REQUIRE(status.has_value());
  CHECK(exited_with(*status, 0));
}
