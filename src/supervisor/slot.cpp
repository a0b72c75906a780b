#include "supervisor/slot.hpp"

#include <stdexcept>

namespace inferq::supervisor {

const char* slot_state_name(SlotState s) {
  switch (s) {
    case SlotState::kWaitRestart:
      return "wait_restart";
    case SlotState::kStarting:
      return "starting";
    case SlotState::kIdle:
      return "idle";
    case SlotState::kBusy:
      return "busy";
    case SlotState::kExiting:
      return "exiting";
    case SlotState::kStopped:
      return "stopped";
    case SlotState::kFilling:
      return "filling";
  }
  return "?";
}

void Slot::enter(State to) {
  if (!slot_may_enter(state_, to)) {
    throw std::logic_error(std::string("executor slot ") + (queue ? queue->name : "?") + "#" +
                           std::to_string(index) + ": no transition from " + slot_state_name(state_) +
                           " to " + slot_state_name(to));
  }
  state_ = to;
}

}  // namespace inferq::supervisor
