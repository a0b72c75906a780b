#include "util/fd.hpp"

#include <doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <type_traits>
#include <utility>

using inferq::util::UniqueFd;

namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

// Both ends of a fresh pipe, owned.
std::pair<UniqueFd, UniqueFd> make_pipe() {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace

static_assert(!std::is_copy_constructible_v<UniqueFd>);
static_assert(!std::is_copy_assignable_v<UniqueFd>);
static_assert(std::is_nothrow_move_constructible_v<UniqueFd>);
static_assert(std::is_nothrow_move_assignable_v<UniqueFd>);
static_assert(std::is_nothrow_destructible_v<UniqueFd>);

TEST_CASE("UniqueFd starts empty") {
  const UniqueFd fd;
  CHECK(fd.get() == -1);
  CHECK_FALSE(fd.valid());
  CHECK_FALSE(fd);
}

TEST_CASE("UniqueFd closes its descriptor when destroyed") {
  int raw = -1;
  {
    auto [read_end, write_end] = make_pipe();
    raw = read_end.get();
    CHECK(read_end);
    CHECK(is_open(raw));
  }
  CHECK_FALSE(is_open(raw));
}

TEST_CASE("UniqueFd reset closes the old descriptor and owns the new one") {
  auto [read_end, write_end] = make_pipe();
  const int old_read = read_end.get();
  const int old_write = write_end.get();

  read_end.reset(write_end.release());
  CHECK_FALSE(is_open(old_read));
  CHECK(read_end.get() == old_write);
  CHECK(write_end.get() == -1);

  read_end.reset(read_end.get());  // resetting to itself must not close it
  CHECK(is_open(old_write));

  read_end.reset();
  CHECK_FALSE(read_end);
  CHECK_FALSE(is_open(old_write));
}

TEST_CASE("UniqueFd release gives up ownership without closing") {
  auto [read_end, write_end] = make_pipe();
  const int raw = read_end.release();
  CHECK_FALSE(read_end);
  CHECK(is_open(raw));
  ::close(raw);
}

TEST_CASE("UniqueFd moves ownership") {
  auto [read_end, write_end] = make_pipe();
  const int raw_read = read_end.get();
  const int raw_write = write_end.get();

  UniqueFd moved(std::move(read_end));
  CHECK(moved.get() == raw_read);
  CHECK_FALSE(read_end);  // NOLINT(bugprone-use-after-move): the moved-from state is the contract

  moved = std::move(write_end);  // closes the read end, takes the write end
  CHECK_FALSE(is_open(raw_read));
  CHECK(moved.get() == raw_write);
  CHECK_FALSE(write_end);  // NOLINT(bugprone-use-after-move)

  UniqueFd& self = moved;
  moved = std::move(self);  // self-move keeps the descriptor
  CHECK(moved.get() == raw_write);
  CHECK(is_open(raw_write));
}
