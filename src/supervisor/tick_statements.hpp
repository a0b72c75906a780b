#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/settings.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"

namespace inferq::supervisor {

// What the tick asks of the database, one call per statement (see
// db/queue_ops.hpp for each); every call throws db::DbError. The daemon's
// are PgTickStatements; a test of the tick's logic without PostgreSQL gives
// its own. Tick thread only.
class TickStatements {
 public:
  virtual ~TickStatements() = default;

  // The socket that a notification on inferq_jobs makes readable; -1 while
  // there is no connection.
  virtual int socket() const = 0;
  // Takes the notifications that came; true when there were any.
  virtual bool take_notifications() = 0;

  virtual int reap(std::chrono::milliseconds stale_after, const std::vector<std::int64_t>& keep) = 0;
  virtual db::ReapAndClaim reap_then_claim(std::chrono::milliseconds stale_after,
                                           const std::vector<std::int64_t>& keep, const std::string& queue,
                                           std::int64_t worker_id, int max_jobs,
                                           int default_max_attempts) = 0;
  virtual std::optional<db::ClaimedUnit> claim(const std::string& queue, std::int64_t worker_id, int max_jobs,
                                               int default_max_attempts) = 0;
  virtual std::vector<db::ClaimedJob> claim_more(std::int64_t lease_id, const std::string& queue,
                                                 int max_jobs, int default_max_attempts) = 0;
  virtual int fail_unclaimable(const std::string& queue, int limit) = 0;
  virtual bool has_available_work(const std::string& queue) = 0;
  // The first queue of `settings` whose sink the database lacks, as a
  // message naming it; nullopt when every sink exists.
  virtual std::optional<std::string> missing_sink(const config::Settings& settings) = 0;
  virtual void set_worker_queues(std::int64_t worker_id, const std::vector<std::string>& queues) = 0;
  virtual int release(const std::vector<std::int64_t>& leases) = 0;
  virtual void deregister_worker(std::int64_t worker_id) = 0;
};

// The tick's statements on its own connection to `url`, which LISTENs on
// inferq_jobs, so a notification wakes the thread that claims with no other
// thread in between.
class PgTickStatements final : public TickStatements {
 public:
  explicit PgTickStatements(const std::string& url);

  int socket() const override;
  bool take_notifications() override;
  int reap(std::chrono::milliseconds stale_after, const std::vector<std::int64_t>& keep) override;
  db::ReapAndClaim reap_then_claim(std::chrono::milliseconds stale_after,
                                   const std::vector<std::int64_t>& keep, const std::string& queue,
                                   std::int64_t worker_id, int max_jobs, int default_max_attempts) override;
  std::optional<db::ClaimedUnit> claim(const std::string& queue, std::int64_t worker_id, int max_jobs,
                                       int default_max_attempts) override;
  std::vector<db::ClaimedJob> claim_more(std::int64_t lease_id, const std::string& queue, int max_jobs,
                                         int default_max_attempts) override;
  int fail_unclaimable(const std::string& queue, int limit) override;
  bool has_available_work(const std::string& queue) override;
  std::optional<std::string> missing_sink(const config::Settings& settings) override;
  void set_worker_queues(std::int64_t worker_id, const std::vector<std::string>& queues) override;
  int release(const std::vector<std::int64_t>& leases) override;
  void deregister_worker(std::int64_t worker_id) override;

 private:
  db::Session session_;
};

// The first queue of `settings` whose sink the database lacks, as a message
// naming it (file, queue, signature); nullopt when every sink exists.
// Throws db::DbError.
std::optional<std::string> missing_sink(db::Session& session, const config::Settings& settings);

}  // namespace inferq::supervisor
