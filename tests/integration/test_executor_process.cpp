// Starts the real inferq-executor binary the way the supervisor does (fork,
// exec, the socket as fd 3) and checks what it says and how it ends.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <doctest.h>

#include "protocol/channel.hpp"

using namespace inferq::protocol;

namespace {

constexpr int kChildFd = 3;

std::string executor_path() {
  const char* dir = std::getenv("INFERQ_BIN_DIR");
  REQUIRE_MESSAGE(dir != nullptr, "INFERQ_BIN_DIR is not set (run through ctest)");
  return std::string(dir) + "/inferq-executor";
}

// One inferq-executor child. Killed and reaped on scope exit if still alive.
class Executor {
 public:
  // `args` follow the program name; the socket is the child's fd 3 unless
  // with_socket is false. With capture_stdout, stdout() returns what it printed.
  explicit Executor(std::vector<std::string> args, bool with_socket = true, bool capture_stdout = false) {
    std::vector<std::string> argv_s{executor_path()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);

    int sv[2] = {-1, -1};
    if (with_socket) REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    int out[2] = {-1, -1};
    if (capture_stdout) REQUIRE(::pipe2(out, O_CLOEXEC) == 0);

    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      if (with_socket) {
        if (sv[1] == kChildFd) {
          ::fcntl(kChildFd, F_SETFD, 0);
        } else if (::dup2(sv[1], kChildFd) < 0) {
          ::_exit(126);
        }
      }
      if (capture_stdout && ::dup2(out[1], STDOUT_FILENO) < 0) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (with_socket) {
      ::close(sv[1]);
      fd_ = sv[0];
    }
    if (capture_stdout) {
      ::close(out[1]);
      stdout_fd_ = out[0];
    }
  }

  ~Executor() {
    close_socket();
    if (stdout_fd_ >= 0) ::close(stdout_fd_);
    if (pid_ > 0 && status_ < 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  pid_t pid() const { return pid_; }
  int fd() const { return fd_; }
  void close_socket() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // The wait status once the child exits; fails the test after 10 s.
  int wait() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (status_ < 0) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      REQUIRE(r >= 0);
      if (r == pid_) {
        status_ = status;
        break;
      }
      REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "inferq-executor did not exit");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return status_;
  }
  int exit_code() {
    const int status = wait();
    REQUIRE_MESSAGE(WIFEXITED(status), "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
    return WEXITSTATUS(status);
  }

  std::string stdout_text() {
    std::string s;
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::read(stdout_fd_, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
    return s;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  int stdout_fd_ = -1;
  int status_ = -1;
};

std::vector<std::string> args_for(const std::string& handler) {
  return {"--fd", std::to_string(kChildFd), "--queue", "test", "--handler", handler};
}

template <typename T>
T read_as(int fd) {
  std::optional<Message> m = read_message(fd);
  REQUIRE_MESSAGE(m.has_value(), "inferq-executor closed the socket");
  REQUIRE_MESSAGE(std::holds_alternative<T>(*m), "got " << message_name(*m));
  return std::get<T>(std::move(*m));
}

void expect_ready(Executor& e, const std::string& handler) {
  const Ready r = read_as<Ready>(e.fd());
  CHECK(r.pid == static_cast<std::uint32_t>(e.pid()));
  CHECK(r.handler == handler);
}

UnitResult run_unit(Executor& e, const RunUnit& unit) {
  write_message(e.fd(), unit);
  UnitResult r = read_as<UnitResult>(e.fd());
  CHECK(r.unit_id == unit.unit_id);
  REQUIRE(r.jobs.size() == unit.jobs.size());
  for (std::size_t i = 0; i < unit.jobs.size(); ++i) CHECK(r.jobs[i].job_id == unit.jobs[i].job_id);
  return r;
}

}  // namespace

TEST_CASE("echo: Ready, a unit of three jobs, then closing the socket exits 0") {
  Executor e(args_for("builtin:echo"));
  expect_ready(e, "builtin:echo");
  const std::string odd = std::string("{\"x\":\"\0\xff\xc3\xa9\"}", 12);
  const UnitResult r =
      run_unit(e, RunUnit{101, {{1, R"({"a":1})"}, {2, odd}, {3, std::string(200000, '7')}}});
  CHECK(r.jobs[0].body == R"({"a":1})");
  CHECK(r.jobs[1].body == odd);
  CHECK(r.jobs[2].body == std::string(200000, '7'));
  for (const JobOutput& j : r.jobs) CHECK(j.outcome == Outcome::kSucceeded);
  // A second unit on the same process.
  CHECK(run_unit(e, RunUnit{102, {{4, "{}"}}}).jobs[0].body == "{}");
  e.close_socket();
  CHECK(e.exit_code() == 0);
}

TEST_CASE("sleep: a good unit and a bad payload") {
  Executor e(args_for("builtin:sleep"));
  expect_ready(e, "builtin:sleep");
  const UnitResult r = run_unit(e, RunUnit{1, {{1, R"({"seconds": 0.01})"}, {2, R"({"seconds": "soon"})"}}});
  CHECK(r.jobs[0].outcome == Outcome::kSucceeded);
  CHECK(r.jobs[0].body == R"({"slept_seconds":0.01})");
  CHECK(r.jobs[1].outcome == Outcome::kPermanent);
  CHECK(r.jobs[1].body.find(R"(field "seconds")") != std::string::npos);
  e.close_socket();
  CHECK(e.exit_code() == 0);
}

TEST_CASE("fail: a unit of permanent and transient failures") {
  Executor e(args_for("builtin:fail"));
  expect_ready(e, "builtin:fail");
  const UnitResult r =
      run_unit(e, RunUnit{7, {{1, R"({"permanent": true, "message": "bad shape"})"}, {2, "{}"}}});
  CHECK(r.jobs[0].outcome == Outcome::kPermanent);
  CHECK(r.jobs[0].body == "bad shape");
  CHECK(r.jobs[1].outcome == Outcome::kTransient);
  CHECK(r.jobs[1].body == "builtin:fail");
}

TEST_CASE("a garbage frame makes the executor exit 3") {
  Executor e(args_for("builtin:echo"));
  expect_ready(e, "builtin:echo");
  const std::string garbage("\x02\x00\x00\x00\x63\x02", 6);  // version 99
  REQUIRE(::write(e.fd(), garbage.data(), garbage.size()) == 6);
  CHECK(e.exit_code() == 3);
}

TEST_CASE("a message the supervisor never sends makes the executor exit 3") {
  Executor e(args_for("builtin:echo"));
  expect_ready(e, "builtin:echo");
  write_message(e.fd(), UnitResult{1, {}});
  CHECK(e.exit_code() == 3);
}

TEST_CASE("builtin:crash dies by SIGABRT when it runs a unit") {
  Executor e(args_for("builtin:crash"));
  expect_ready(e, "builtin:crash");
  write_message(e.fd(), RunUnit{1, {{1, "{}"}}});
  CHECK(!read_message(e.fd()).has_value());  // EOF: it died mid-unit
  const int status = e.wait();
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGABRT);
}

TEST_CASE("SIGINT is ignored, SIGTERM ends the executor") {
  Executor e(args_for("builtin:echo"));
  expect_ready(e, "builtin:echo");
  REQUIRE(::kill(e.pid(), SIGINT) == 0);
  CHECK(run_unit(e, RunUnit{1, {{1, "still here"}}}).jobs[0].body == "still here");
  REQUIRE(::kill(e.pid(), SIGTERM) == 0);
  const int status = e.wait();
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGTERM);
}

TEST_CASE("an unknown handler exits 2 without Ready") {
  Executor e(args_for("builtin:nope"));
  CHECK(!read_message(e.fd()).has_value());
  CHECK(e.exit_code() == 2);
}

TEST_CASE("bad usage exits 2") {
  SUBCASE("no arguments") {
    Executor e({}, false);
    CHECK(e.exit_code() == 2);
  }
  SUBCASE("missing --handler") {
    Executor e({"--fd", "3", "--queue", "q"});
    CHECK(e.exit_code() == 2);
  }
  SUBCASE("an fd that is not open") {
    Executor e({"--fd", "250", "--queue", "q", "--handler", "builtin:echo"});
    CHECK(e.exit_code() == 2);
  }
  SUBCASE("not a number") {
    Executor e({"--fd", "three", "--queue", "q", "--handler", "builtin:echo"});
    CHECK(e.exit_code() == 2);
  }
  SUBCASE("unknown option") {
    Executor e({"--fd", "3", "--queue", "q", "--handler", "builtin:echo", "--bogus"});
    CHECK(e.exit_code() == 2);
  }
  SUBCASE("a --parent-pid that is not our parent: the supervisor is gone") {
    Executor e({"--fd=3", "--queue=q", "--handler=builtin:echo", "--parent-pid=999999999"});
    CHECK(e.exit_code() == 1);
  }
}

TEST_CASE("--version and --help") {
  {
    Executor e({"--version"}, false, true);
    CHECK(e.stdout_text() == "inferq-executor 0.1.0\n");
    CHECK(e.exit_code() == 0);
  }
  {
    Executor e({"--help"}, false, true);
    CHECK(e.stdout_text().find("usage: inferq-executor --fd N") == 0);
    CHECK(e.exit_code() == 0);
  }
}

TEST_CASE("--parent-pid naming the real parent runs normally") {
  Executor e(
      {"--fd", "3", "--queue", "q", "--handler", "builtin:echo", "--parent-pid", std::to_string(::getpid())});
  expect_ready(e, "builtin:echo");
  e.close_socket();
  CHECK(e.exit_code() == 0);
}
