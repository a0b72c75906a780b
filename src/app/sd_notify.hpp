#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "util/fd.hpp"

namespace inferq::app {

// The systemd notification protocol (sd_notify(3)) without libsystemd: one
// datagram per message to the unix socket named by $NOTIFY_SOCKET (a path, or
// "@name" for the abstract namespace). Inert when there is no socket, so the
// daemon behaves the same outside systemd. Not thread-safe: one thread (the
// start-up code, then the tick loop) owns it.
class SystemdNotifier {
 public:
  // Inert: every call does nothing.
  SystemdNotifier() = default;
  // Sends to `socket` ("/path" or "@abstract"; empty: inert). `watchdog` is
  // the watchdog timeout (WATCHDOG_USEC); zero: no watchdog pings.
  explicit SystemdNotifier(std::string socket, std::chrono::microseconds watchdog = {});

  // From $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID (the watchdog is
  // ours only when WATCHDOG_PID is unset or our pid). Removes the three from
  // the environment so executor processes do not inherit them: call before
  // any thread starts (unsetenv is not thread-safe).
  static SystemdNotifier from_environment();

  // True when a socket is configured.
  bool enabled() const { return !socket_.empty(); }

  // The watchdog timeout systemd asked for, if any.
  std::optional<std::chrono::microseconds> watchdog_timeout() const;

  // Sends `state` (newline-separated VAR=value assignments, e.g. "READY=1").
  // Returns false when inert or when the send failed; never throws, never
  // blocks (a full socket buffer drops the message, as libsystemd would fail).
  bool notify(std::string_view state) noexcept;

  // Sends READY=1 with a STATUS= line.
  bool ready(std::string_view status) noexcept;
  // Sends STATUS=<status>.
  bool status(std::string_view status) noexcept;
  // Sends STOPPING=1 with a STATUS= line.
  bool stopping(std::string_view status) noexcept;

  // Sends WATCHDOG=1 when at least half the watchdog timeout has passed
  // since the last ping (the interval sd_watchdog_enabled(3) recommends);
  // `now` from the steady clock. Call it only from a healthy loop: a loop
  // that stops calling it gets the service killed by systemd.
  bool watchdog_tick(std::chrono::steady_clock::time_point now) noexcept;

 private:
  std::string socket_;
  std::chrono::microseconds watchdog_{0};
  util::UniqueFd fd_;  // opened on the first send
  std::optional<std::chrono::steady_clock::time_point> last_ping_;
};

}  // namespace inferq::app
