#include "support/notifications.hpp"

#include <pqxx/pqxx>

#include <chrono>
#include <stdexcept>

namespace inferq::test {

std::vector<db::Notification> drain(const std::string& url, db::Listener& listener) {
  static int markers = 0;
  const std::string marker = "marker-" + std::to_string(++markers);
  {
    pqxx::connection other(url);
    pqxx::nontransaction tx(other);
    tx.exec_params("SELECT pg_notify('inferq_jobs', $1)", marker);
  }
  std::vector<db::Notification> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    for (auto& n : listener.wait(std::chrono::milliseconds(100))) {
      if (n.payload == marker) return got;
      got.push_back(n);
    }
  }
  throw std::runtime_error("the marker notification " + marker + " did not arrive within 10 s");
}

int count_of(const std::vector<db::Notification>& got, const std::string& channel,
             const std::string& payload) {
  int n = 0;
  for (const auto& x : got) n += x.channel == channel && x.payload == payload;
  return n;
}

}  // namespace inferq::test
