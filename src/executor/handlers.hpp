#pragma once

#include <memory>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "protocol/messages.hpp"

// What an inferq-executor runs: a Handler turns the jobs of one unit into
// their outputs. The built-ins are test doubles and fault-injection seams
// (echo, sleep, fail, crash); a model handler batches a whole unit.
namespace inferq::executor {

// Thrown by a handler that can no longer run units safely (e.g. a sticky
// CUDA error). The executor sends Fatal and exits; the unit is charged an
// attempt by the supervisor.
class FatalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One per executor process, used from one thread only.
class Handler {
 public:
  virtual ~Handler() = default;

  // Runs one job. A job that fails is an output with Outcome::kPermanent
  // (bad input: the message names the field) or Outcome::kTransient, never
  // an exception; throw FatalError only when the process must be replaced.
  virtual protocol::JobOutput run_job(const protocol::JobInput& job) = 0;

  // Runs every job of `unit` and returns one output per job, in the same
  // order, with the same job ids and unit id. The default calls run_job on
  // each job, turning any exception but FatalError into a transient failure
  // of that job. A handler that batches (a model) overrides this; `unit` is
  // taken by value so a handler can move payloads instead of copying them.
  virtual protocol::UnitResult run_unit(protocol::RunUnit unit);
};

// The built-in handler called `name` (one of handler_names()), or nullptr if
// there is none.
std::unique_ptr<Handler> make_handler(std::string_view name);

// The names make_handler knows, for usage and error messages.
const std::vector<std::string_view>& handler_names();

}  // namespace inferq::executor
