#pragma once

#include <memory>
#include <stdexcept>
#include <string>

#include "metrics/metrics.hpp"

namespace inferq::metrics {

// A start-up problem of the metrics endpoint (bad or busy listen address).
class ListenError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The HTTP endpoint on its own threads: GET /metrics (text format 0.0.4),
// /healthz and /readyz (200 or 503 with a short JSON body). The handlers read
// only `metrics` (atomics and the registry): they never touch the database
// or a supervisor lock, so they answer while every slot is hung and while
// the database is down.
class HttpServer {
 public:
  // Binds `listen` ("HOST:PORT", "[V6]:PORT"; port 0 = an ephemeral port)
  // and starts serving. Throws ListenError when the address is malformed,
  // cannot be resolved, or is in use. `metrics` must outlive the server.
  HttpServer(const std::string& listen, const Metrics& metrics);
  // Stops and joins the server threads.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound address as HOST:PORT, with the real port when 0 was asked.
  std::string address() const;
  int port() const;
  // Stops serving; idempotent, noexcept.
  void stop() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Splits "HOST:PORT" or "[V6]:PORT" (brackets dropped); throws ListenError.
std::pair<std::string, int> split_listen(const std::string& listen);

}  // namespace inferq::metrics
