#pragma once

#include <optional>
#include <string_view>

// The one vocabulary for how a job's attempt ended, between the supervisor
// and inferq.complete_outcomes (migrations): each enum has one spelling, the
// one SQL reads or returns.
namespace inferq::db {

// Why a job did not succeed, as the supervisor tells the completion.
enum class ErrorClass {
  kPermanent,  // bad input: dead now, no retry
  kTransient,  // retried with backoff while attempts remain
  kFatal,      // an error fatal to the executor (a sticky CUDA error): retried
  kDeadline,   // the unit passed its deadline: retried
  kCrash,      // the executor died or misbehaved: retried
  kRequeue,    // never ran: back to available, its attempt refunded
};

// The spelling inferq.complete_outcomes reads ("permanent", ...).
const char* to_string(ErrorClass c) noexcept;

// What the completion made of a job's attempt, as inferq.complete_outcomes
// returns it.
enum class JobOutcome {
  kSucceeded,
  kRetried,    // failed, will run again
  kDead,       // failed for good
  kCancelled,  // cancelled while it ran; its result was not kept
  kRequeued,   // given back unrun, its attempt refunded
};

// The outcome SQL spelled `text`; nullopt for a spelling this build does not know.
std::optional<JobOutcome> job_outcome_from(std::string_view text) noexcept;
const char* to_string(JobOutcome o) noexcept;

}  // namespace inferq::db
