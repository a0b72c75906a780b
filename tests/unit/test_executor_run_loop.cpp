#include "executor/run_loop.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <string>

#include <doctest.h>

#include "protocol/channel.hpp"

using namespace inferq::executor;
using namespace inferq::protocol;

namespace {

// serve() on a thread, over a socketpair; the test plays the supervisor.
class Served {
 public:
  explicit Served(Handler& handler) {
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd_) == 0);
    exit_code_ =
        std::async(std::launch::async, [this, &handler] { return serve(fd_[1], handler, "test:handler"); });
  }
  ~Served() {
    close_supervisor();
    if (exit_code_.valid()) exit_code_.wait();
    ::close(fd_[1]);
  }
  Served(const Served&) = delete;
  Served& operator=(const Served&) = delete;

  int fd() const { return fd_[0]; }
  void close_supervisor() {
    if (fd_[0] >= 0) ::close(fd_[0]);
    fd_[0] = -1;
  }
  int exit_code() { return exit_code_.get(); }

 private:
  int fd_[2] = {-1, -1};
  std::future<int> exit_code_;
};

template <typename T>
T read_as(int fd) {
  std::optional<Message> m = read_message(fd);
  REQUIRE(m.has_value());
  REQUIRE(std::holds_alternative<T>(*m));
  return std::get<T>(std::move(*m));
}

class Scripted final : public Handler {
 public:
  enum class Mode { kEcho, kFatal, kThrow, kShort } mode = Mode::kEcho;
  JobOutput run_job(const JobInput& job) override { return {job.job_id, Outcome::kSucceeded, job.payload}; }
  UnitResult run_unit(RunUnit unit) override {
    if (mode == Mode::kFatal) throw FatalError("device lost");
    if (mode == Mode::kThrow) throw std::runtime_error("bug");
    UnitResult r = Handler::run_unit(std::move(unit));
    if (mode == Mode::kShort) r.jobs.pop_back();
    r.unit_id = 12345;  // serve() must put the right one back
    return r;
  }
};

}  // namespace

TEST_CASE("serve: Ready, units answered in order, clean EOF exits 0") {
  Scripted h;
  Served s(h);
  const Ready ready = read_as<Ready>(s.fd());
  CHECK(ready.pid == static_cast<std::uint32_t>(::getpid()));
  CHECK(ready.handler == "test:handler");
  for (std::uint64_t unit = 1; unit <= 3; ++unit) {
    write_message(s.fd(), RunUnit{unit, {{10, "a"}, {11, "b"}}});
    const UnitResult r = read_as<UnitResult>(s.fd());
    CHECK(r.unit_id == unit);
    REQUIRE(r.jobs.size() == 2);
    CHECK(r.jobs[0].job_id == 10);
    CHECK(r.jobs[1].body == "b");
  }
  s.close_supervisor();
  CHECK(s.exit_code() == kExitOk);
}

TEST_CASE("serve: an unexpected message type exits kExitProtocol") {
  Scripted h;
  Served s(h);
  read_as<Ready>(s.fd());
  write_message(s.fd(), Ready{1, "not for you"});
  CHECK(s.exit_code() == kExitProtocol);
}

TEST_CASE("serve: a malformed frame exits kExitProtocol") {
  Scripted h;
  Served s(h);
  read_as<Ready>(s.fd());
  const std::string garbage("\x02\x00\x00\x00\x63\x02", 6);
  REQUIRE(::write(s.fd(), garbage.data(), garbage.size()) == 6);
  CHECK(s.exit_code() == kExitProtocol);
}

TEST_CASE("serve: a handler that gives up sends Fatal and exits kExitFatal") {
  for (auto mode : {Scripted::Mode::kFatal, Scripted::Mode::kThrow, Scripted::Mode::kShort}) {
    Scripted h;
    h.mode = mode;
    Served s(h);
    read_as<Ready>(s.fd());
    write_message(s.fd(), RunUnit{1, {{1, "x"}, {2, "y"}}});
    const Fatal f = read_as<Fatal>(s.fd());
    CHECK(!f.message.empty());
    if (mode == Scripted::Mode::kFatal) CHECK(f.message == "device lost");
    CHECK(s.exit_code() == kExitFatal);
  }
}
