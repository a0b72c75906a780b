#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "db/session.hpp"

namespace inferq::db {

struct QueueStatus {
  std::string queue;
  std::map<std::string, std::int64_t> jobs_by_state;   // every state, 0 when none
  std::optional<double> oldest_available_age_seconds;  // due jobs only
};

struct LeaseStatus {
  std::int64_t lease_id = 0;
  std::string queue;
  std::optional<std::string> work_unit_key;
  std::string worker;
  std::int64_t jobs = 0;
  double age_seconds = 0;
  double heartbeat_age_seconds = 0;
};

struct WorkerStatus {
  std::int64_t id = 0;
  std::string name;
  std::string version;
  double up_seconds = 0;
  double last_seen_seconds = 0;
};

struct StatusReport {
  int schema_version = 0;
  std::vector<QueueStatus> queues;
  std::vector<LeaseStatus> leases;
  std::vector<WorkerStatus> workers;  // those seen within `live_within`
};

// Reads the report in one snapshot. Counting scans the jobs table: it is for
// people and scripts, not for hot paths. Throws DbError.
StatusReport read_status(Session& s, std::chrono::milliseconds live_within);

}  // namespace inferq::db
