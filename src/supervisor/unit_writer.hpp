#pragma once

#include <chrono>

#include "db/queue_ops.hpp"

namespace inferq::supervisor {

// Where the tick hands finished units: the daemon's is CompletionWriter,
// which writes them fenced on a thread of its own; a test of the tick's
// logic without PostgreSQL keeps them. The writer drops each unit's lease
// from the LeaseRegistry once it is written.
class UnitWriter {
 public:
  virtual ~UnitWriter() = default;

  virtual void start() = 0;
  // Queues a unit's outcome. Never blocks on the database.
  virtual void submit(db::UnitFinish unit) = 0;
  // Blocks until everything submitted so far is written or `deadline`
  // passes; returns true if it was all written.
  virtual bool flush(std::chrono::steady_clock::time_point deadline) = 0;
  // Stops writing; what is still queued is not written (its leases expire
  // and are reaped). Idempotent.
  virtual void stop() noexcept = 0;
};

}  // namespace inferq::supervisor
