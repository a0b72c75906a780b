// supervisor/slot: the executor slot's states and the one table of the
// changes between them (kSlotTransitions), which Slot::enter enforces.
#include <doctest.h>

#include <stdexcept>
#include <string>

#include "supervisor/slot.hpp"

namespace {

using inferq::supervisor::Slot;
using inferq::supervisor::slot_may_enter;
using S = inferq::supervisor::SlotState;

constexpr S kAll[] = {S::kWaitRestart, S::kStarting, S::kIdle,   S::kBusy,
                      S::kExiting,     S::kStopped,  S::kFilling};

}  // namespace

TEST_CASE("a slot runs units only after Ready, and a unit only from idle or filling") {
  CHECK(slot_may_enter(S::kWaitRestart, S::kStarting));
  CHECK(slot_may_enter(S::kStopped, S::kStarting));
  CHECK(slot_may_enter(S::kStarting, S::kIdle));
  CHECK(slot_may_enter(S::kIdle, S::kBusy));
  CHECK(slot_may_enter(S::kIdle, S::kFilling));
  CHECK(slot_may_enter(S::kFilling, S::kBusy));
  CHECK(slot_may_enter(S::kBusy, S::kIdle));
  for (const S from : kAll) {
    const bool ready = from == S::kIdle || from == S::kFilling;
    CHECK_MESSAGE(slot_may_enter(from, S::kBusy) == ready, inferq::supervisor::slot_state_name(from));
    // Only a process that said Ready is idle.
    const bool idles = from == S::kStarting || from == S::kIdle || from == S::kBusy || from == S::kFilling;
    CHECK_MESSAGE(slot_may_enter(from, S::kIdle) == idles, inferq::supervisor::slot_state_name(from));
  }
  // An exiting executor is never given work or taken back as ready.
  CHECK_FALSE(slot_may_enter(S::kExiting, S::kIdle));
  CHECK_FALSE(slot_may_enter(S::kExiting, S::kStarting));
  // Filling holds a claimed unit; only an idle slot claims one.
  CHECK_FALSE(slot_may_enter(S::kBusy, S::kFilling));
  CHECK_FALSE(slot_may_enter(S::kStarting, S::kFilling));
}

TEST_CASE("a process can end in any state; a slot with no process cannot be killed") {
  for (const S from : kAll) {
    CHECK(slot_may_enter(from, S::kWaitRestart));
    CHECK(slot_may_enter(from, S::kStopped));
  }
  CHECK_FALSE(slot_may_enter(S::kWaitRestart, S::kExiting));
  CHECK_FALSE(slot_may_enter(S::kStopped, S::kExiting));
}

TEST_CASE("Slot::enter follows the table and refuses any other change, naming the slot") {
  inferq::config::QueueSettings q;
  q.name = "text";
  Slot slot;
  slot.queue = &q;
  slot.index = 2;
  CHECK(slot.state() == S::kWaitRestart);
  slot.enter(S::kStarting);
  slot.enter(S::kIdle);
  slot.enter(S::kBusy);
  try {
    slot.enter(S::kFilling);
    FAIL("busy -> filling was accepted");
  } catch (const std::logic_error& e) {
    CHECK(std::string(e.what()) == "executor slot text#2: no transition from busy to filling");
  }
  CHECK(slot.state() == S::kBusy);  // unchanged
  slot.enter(S::kExiting);
  slot.enter(S::kWaitRestart);
}
