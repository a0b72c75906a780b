#include "metrics/http_server.hpp"

#include <httplib.h>

#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <thread>

namespace inferq::metrics {
namespace {

// A request takes well under a millisecond, but httplib keeps a thread on
// each keep-alive connection until it idles out (5 s): enough threads for a
// few Prometheus servers, health checkers and a person with curl at once.
constexpr std::size_t kServerThreads = 8;

std::string health_body(const Health& h) {
  std::string body = "{\"status\":\"";
  body += h.ok ? "ok" : "unavailable";
  body += "\",\"reason\":\"";
  for (const char c : h.reason) {
    if (c == '"' || c == '\\') body += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) body += c;
  }
  body += "\"}\n";
  return body;
}

}  // namespace

std::pair<std::string, int> split_listen(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0)
    throw ListenError("metrics.listen: \"" + listen + "\" is not HOST:PORT");
  std::string host = listen.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']')
      throw ListenError("metrics.listen: bad IPv6 address in \"" + listen + "\"");
    host = host.substr(1, host.size() - 2);
  }
  const std::string port_text = listen.substr(colon + 1);
  int port = -1;
  const auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size() || port < 0 ||
      port > 65535)
    throw ListenError("metrics.listen: bad port in \"" + listen + "\" (0..65535)");
  return {host, port};
}

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::string host;
  int port = 0;
};

HttpServer::HttpServer(const std::string& listen, const Metrics& metrics) : impl_(std::make_unique<Impl>()) {
  auto [host, port] = split_listen(listen);
  auto& server = impl_->server;
  server.new_task_queue = [] { return new httplib::ThreadPool(kServerThreads); };
  // httplib's default sets SO_REUSEPORT, which lets a second daemon bind the
  // same port and silently share (or steal) its scrapes: a busy address must
  // be a start-up error instead. SO_REUSEADDR only skips TIME_WAIT.
  server.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.expose(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server.Get("/healthz", [&metrics](const httplib::Request&, httplib::Response& res) {
    const auto h = metrics.liveness();
    res.status = h.ok ? 200 : 503;
    res.set_content(health_body(h), "application/json");
  });
  server.Get("/readyz", [&metrics](const httplib::Request&, httplib::Response& res) {
    const auto h = metrics.readiness();
    res.status = h.ok ? 200 : 503;
    res.set_content(health_body(h), "application/json");
  });
  if (port == 0) {
    port = server.bind_to_any_port(host);
    if (port < 0)
      throw ListenError("metrics.listen: cannot listen on " + listen + ": " + std::strerror(errno));
  } else if (!server.bind_to_port(host, port)) {
    throw ListenError("metrics.listen: cannot listen on " + listen + ": " +
                      (errno ? std::strerror(errno) : "address not available"));
  }
  impl_->host = host;
  impl_->port = port;
  impl_->thread = std::thread([this] { impl_->server.listen_after_bind(); });
  // httplib's stop() does nothing until the accept loop is running, so a
  // stop() right after construction would leave the thread to run forever:
  // wait (briefly: it only has to enter its loop) until it is.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!impl_->server.is_running() && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() noexcept {
  if (!impl_) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::string HttpServer::address() const {
  const bool v6 = impl_->host.find(':') != std::string::npos;
  return (v6 ? "[" + impl_->host + "]" : impl_->host) + ":" + std::to_string(impl_->port);
}

int HttpServer::port() const { return impl_->port; }

}  // namespace inferq::metrics
