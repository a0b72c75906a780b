#pragma once

// Private to src/db/: the libpqxx connection behind a Session.
#include <pqxx/pqxx>

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "db/session.hpp"

namespace inferq::db {

class Raw {
 public:
  explicit Raw(const std::string& url) : conn(with_tcp_bounds(url)) {}
  pqxx::connection conn;
  // Notifications delivered on this connection, until taken. Declared after
  // conn: the receivers unregister from it when they are destroyed.
  std::vector<Notification> pending;
  std::vector<std::unique_ptr<pqxx::notification_receiver>> receivers;

  // Runs `sql` in `tx` as the prepared statement `name`, prepared once per
  // connection; through a transaction pooler (transaction_pooling()) as an
  // unnamed statement instead, since a named one lives on one server
  // connection and the next transaction may run on another.
  template <typename Tx, typename... Args>
  pqxx::result exec_statement(Tx& tx, const std::string& name, const std::string& sql, Args&&... args) {
    if (transaction_pooling()) return tx.exec_params(sql, std::forward<Args>(args)...);
    if (prepared_.insert(name).second) conn.prepare(name, sql);
    return tx.exec_prepared(name, std::forward<Args>(args)...);
  }

 private:
  std::set<std::string> prepared_;
};

// For the samplers' counts over a backlog: the partial indexes only (the
// planner would pick a parallel sequential scan of the whole history, whose
// workers take the claims' CPU), in this backend alone, and no JIT: such a
// count's estimated cost passes jit_above_cost, and compiling it cost more
// than the scan (one unserved-queue sample spent 344 ms in LLVM; with JIT
// off, echo jobs drained 6-12% faster, BENCHMARKS.md). LOCAL, so a
// transaction pooler's next client does not inherit it.
inline constexpr const char* kCountingSettings =
    "SET LOCAL enable_seqscan = off; SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off";

// "{1,2,3}": a bigint[] literal for a statement parameter.
template <typename Container>
std::string int_array_literal(const Container& values) {
  std::string out = "{";
  for (auto v : values) {
    if (out.size() > 1) out += ',';
    out += std::to_string(v);
  }
  out += '}';
  return out;
}

// {"a","b"}: a text[] literal of queue names for a statement parameter.
// Queue names are [A-Za-z0-9_.-] (config and enqueue check): nothing to escape.
inline std::string queue_array_literal(const std::vector<std::string>& queues) {
  std::string out = "{";
  for (const auto& q : queues) {
    if (out.size() > 1) out += ',';
    out += '"' + q + '"';
  }
  out += '}';
  return out;
}

}  // namespace inferq::db
