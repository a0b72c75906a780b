// src/metrics/http_server: binds (port 0 = a free port), serves /metrics,
// /healthz and /readyz, and refuses a bad or busy address at start-up.
#include "metrics/http_server.hpp"

#include <doctest.h>

#include "support/http_get.hpp"

namespace {

using inferq::metrics::BuildInfo;
using inferq::metrics::HttpServer;
using inferq::metrics::ListenError;
using inferq::metrics::Metrics;
using inferq::test::http_get;
using namespace std::chrono_literals;

}  // namespace

TEST_CASE("port 0 binds a free port; /metrics, /healthz and /readyz answer from the metrics") {
  Metrics m({"q"}, 1000ms, BuildInfo{"v"});
  HttpServer server("127.0.0.1:0", m);
  REQUIRE(server.port() > 0);
  CHECK(server.address() == "127.0.0.1:" + std::to_string(server.port()));

  const auto metrics = http_get(server.address(), "/metrics");
  REQUIRE(metrics);
  CHECK(metrics->status == 200);
  CHECK(metrics->body.find("# TYPE inferq_jobs_claimed_total counter") != std::string::npos);

  auto health = http_get(server.address(), "/healthz");
  REQUIRE(health);
  CHECK(health->status == 503);
  CHECK(health->body == "{\"status\":\"unavailable\",\"reason\":\"the tick loop has not started\"}\n");
  m.tick_done(0.001);
  health = http_get(server.address(), "/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body.find("{\"status\":\"ok\"") == 0);

  auto ready = http_get(server.address(), "/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 503);
  CHECK(ready->body.find("the database is unreachable") != std::string::npos);
  m.set_db_up(true);
  m.set_slots("q", 0, 1, 0);
  ready = http_get(server.address(), "/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 200);

  const auto missing = http_get(server.address(), "/nothing");
  REQUIRE(missing);
  CHECK(missing->status == 404);
}

TEST_CASE("a busy port is a start-up error, not a shared port") {
  Metrics m({"q"}, 1000ms, BuildInfo{"v"});
  HttpServer first("127.0.0.1:0", m);
  const std::string taken = "127.0.0.1:" + std::to_string(first.port());
  CHECK_THROWS_WITH_AS(HttpServer(taken, m), doctest::Contains(("cannot listen on " + taken).c_str()),
                       ListenError);
  // The first one still serves.
  const auto r = http_get(first.address(), "/metrics");
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("malformed or unresolvable addresses are start-up errors") {
  Metrics m({"q"}, 1000ms, BuildInfo{"v"});
  for (const char* bad : {"nohostport", ":80", "h:", "h:x1", "h:65536", "[::1:80"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(HttpServer(bad, m), ListenError);
  }
  CHECK_THROWS_WITH_AS(HttpServer("no-such-host.invalid:0", m), doctest::Contains("cannot listen on"),
                       ListenError);
}

TEST_CASE("stop is idempotent and the port is free again afterwards") {
  Metrics m({"q"}, 1000ms, BuildInfo{"v"});
  auto server = std::make_unique<HttpServer>("127.0.0.1:0", m);
  const std::string address = server->address();
  server->stop();
  server->stop();
  CHECK_FALSE(http_get(address, "/metrics", 2s));
  server.reset();
  HttpServer again(address, m);
  CHECK(again.address() == address);
}
