#pragma once
// Polling a drain from beside the daemon that does it, for the benchmarks.

#include <string>

#include <pqxx/pqxx>

namespace inferq::test {

// True when `queue` has no available unkeyed job and no job of any queue
// runs. Read through the partial indexes, so polling it ten times a second
// costs the measured PostgreSQL next to nothing: a count over inferq.jobs
// reads every finished row, which by the end of a drain of big payloads is
// hundreds of megabytes a poll.
bool backlog_drained(pqxx::connection& c, const std::string& queue);

// Enqueues `n` builtin:echo jobs of queue "echo" with {"i": g, "text":
// "hello world"} payloads in one transaction, then VACUUM ANALYZE and a
// CHECKPOINT: a standing backlog has been through checkpoints, and without
// one the drain would also pay for writing back the fill (its dirty pages,
// and new WAL segments where a checkpoint would have recycled old ones).
void fill_echo_backlog(pqxx::connection& c, long n);

}  // namespace inferq::test
