#pragma once

#include <sys/types.h>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

// Paths, temporary directories and polling for the tests.
namespace inferq::test {

// $INFERQ_BIN_DIR/name (ctest sets INFERQ_BIN_DIR to <build>/src; run by hand,
// the build directory this library was configured for is used).
std::string bin_path(const std::string& name);

// $INFERQ_SOURCE_DIR/rel (the repository root), with the same fallback.
std::string source_path(const std::string& rel);

// The file's bytes; empty when it cannot be read (a log not written yet).
std::string read_file(const std::string& path);

// Where tests put temporary files: $INFERQ_TEST_TMP, else /tmp. When the
// tests run as root, the PostgreSQL server user must be able to reach it.
std::string test_tmp_base();

// A fresh directory under test_tmp_base(), removed with everything in it
// when destroyed. Move-only.
class TempDir {
 public:
  // Creates <test_tmp_base()>/<prefix>-XXXXXX (mode 0700); throws on failure.
  explicit TempDir(const std::string& prefix = "inferq-test");
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + rel.
  std::string file(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  void remove() noexcept;

  std::string path_;  // empty once moved from
};

// Calls pred every `step` until it returns true (true) or `timeout` has
// passed (false; pred is called one last time at the deadline). Blocks the
// calling thread; pred must not block for long.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout,
                std::chrono::milliseconds step = std::chrono::milliseconds(20));

// A TCP socket listening on 127.0.0.1 at a free port, which it stores in
// `port`; the caller closes it. Throws on failure.
int listen_on_loopback(int& port);

// The NAME=value entries of /proc/PID/environ (empty when unreadable).
std::vector<std::string> environment_of(pid_t pid);

}  // namespace inferq::test
