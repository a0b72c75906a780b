#pragma once

#include <chrono>
#include <optional>
#include <string>

// A minimal HTTP/1.0 client for the tests of the metrics endpoint (plain
// POSIX sockets: cpp-httplib belongs to src/metrics alone).
namespace inferq::test {

struct HttpResponse {
  int status = 0;
  std::string body;
};

// GET http://ADDRESS/PATH (ADDRESS = "HOST:PORT", IPv4 or a name). nullopt
// when it cannot connect or no full response arrives within `timeout`.
std::optional<HttpResponse> http_get(const std::string& address, const std::string& path,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The value of the sample `series` (exact text before the value, e.g.
// `inferq_db_up` or `inferq_slots{queue="q",state="busy"}`) in a text
// exposition; nullopt when absent.
std::optional<double> metric_value(const std::string& exposition, const std::string& series);

// The value of `series` in a fresh scrape of http://ADDRESS/metrics; nullopt
// when the scrape fails or the series is absent.
std::optional<double> scrape(const std::string& address, const std::string& series);

}  // namespace inferq::test
