// src/db/session: the password kept out of messages, and the TCP bounds
// every connection gets (issue 13 items 5 and 6).
#include <doctest.h>

#include <unistd.h>

#include <chrono>
#include <string>

#include "db/error.hpp"
#include "db/session.hpp"
#include "support/test_env.hpp"

namespace {

using inferq::db::redact_secrets;
using inferq::db::redact_url;
using inferq::db::with_tcp_bounds;

// A TCP socket on 127.0.0.1 that listens but never accepts or answers: the
// kernel completes the handshake, and the server's reply never comes.
struct SilentServer {
  int port = 0;
  int fd = inferq::test::listen_on_loopback(port);
  ~SilentServer() { ::close(fd); }
};

}  // namespace

TEST_CASE("redact_url hides the password in every form libpq reads") {
  CHECK(redact_url("postgresql://u:S3cret@h:5432/db") == "postgresql://u:***@h:5432/db");
  CHECK(redact_url("postgres://u:p%40ss@h/db?sslmode=require") == "postgres://u:***@h/db?sslmode=require");
  CHECK(redact_url("postgresql://u@h/db?sslmode=require&password=S3cret&x=1") ==
        "postgresql://u@h/db?sslmode=require&password=***&x=1");
  CHECK(redact_url("host=h password=S3cret dbname=x") == "host=h password=*** dbname=x");
  CHECK(redact_url("host=h password = S3cret dbname=x") == "host=h password = *** dbname=x");
  CHECK(redact_url("host=h password='a b\\' c' dbname=x") == "host=h password=*** dbname=x");
  CHECK(redact_url("postgresql:///inferq") == "postgresql:///inferq");
}

TEST_CASE("redact_secrets removes the password from text that echoes it, written or decoded") {
  const std::string url = "postgresql://u:S3cr%zzet@h/x";
  CHECK(redact_secrets("invalid percent-encoded token: \"S3cr%zzet\"", url) ==
        "invalid percent-encoded token: \"***\"");
  CHECK(redact_secrets("auth failed for p@ss", "postgresql://u:p%40ss@h/x") == "auth failed for ***");
  CHECK(redact_secrets("saw 'a b' here", "host=h password='a b'") == "saw *** here");
  CHECK(redact_secrets("nothing secret", "postgresql:///inferq") == "nothing secret");
}

TEST_CASE("redact_secrets leaves a short password inside other words alone, so the *** cannot spell it out") {
  const std::string url = "postgresql://u:a@h/x";
  CHECK(redact_secrets("FATAL: password authentication failed for user \"u\"", url) ==
        "FATAL: password authentication failed for user \"u\"");
  CHECK(redact_secrets("token: \"a\" at a, then a", url) == "token: \"***\" at ***, then ***");
  CHECK(redact_secrets("dsn u:a@h", url) == "dsn u:***@h");
  CHECK(redact_secrets("host=h password=ab0 said ab0c and ab0", "host=h password=ab0") ==
        "host=h password=*** said ab0c and ***");
}

TEST_CASE("with_tcp_bounds adds connect timeout, keepalives and tcp_user_timeout unless set") {
  CHECK(with_tcp_bounds("postgresql:///inferq") ==
        "postgresql:///inferq?connect_timeout=10&keepalives=1&keepalives_idle=30&keepalives_interval=10"
        "&keepalives_count=3&tcp_user_timeout=60000");
  CHECK(with_tcp_bounds("postgresql://h/db?sslmode=require&connect_timeout=3&keepalives_idle=5") ==
        "postgresql://h/db?sslmode=require&connect_timeout=3&keepalives_idle=5&keepalives=1"
        "&keepalives_interval=10&keepalives_count=3&tcp_user_timeout=60000");
  CHECK(with_tcp_bounds("host=h tcp_user_timeout = 5 dbname=x") ==
        "host=h tcp_user_timeout = 5 dbname=x connect_timeout=10 keepalives=1 keepalives_idle=30"
        " keepalives_interval=10 keepalives_count=3");
}

TEST_CASE("a server that accepts the connection and never answers fails the connect within its bound") {
  SilentServer server;
  inferq::db::Session session("postgresql://inferq@127.0.0.1:" + std::to_string(server.port) + "/x", "test");
  const auto t0 = std::chrono::steady_clock::now();
  bool failed = false;
  try {
    session.connect();
  } catch (const inferq::db::DbError& e) {
    failed = true;
    CHECK(std::string(e.what()).find("cannot connect") != std::string::npos);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(failed);
  // connect_timeout=10 s (libpq waits at least 2 s and rounds to whole seconds).
  CHECK(s >= 9.0);
  CHECK(s < 15.0);
}
