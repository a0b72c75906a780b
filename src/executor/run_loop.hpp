#pragma once

#include <chrono>
#include <string_view>

#include "executor/handlers.hpp"
#include "protocol/messages.hpp"

// The inferq-executor process: command line, process set-up, and the loop
// that answers RunUnit frames from the supervisor.
namespace inferq::executor {

// Exit codes of inferq-executor, which the supervisor logs.
inline constexpr int kExitOk = 0;        // the supervisor closed the socket; or --help/--version
inline constexpr int kExitIo = 1;        // socket error, or the supervisor was already gone
inline constexpr int kExitUsage = 2;     // bad command line or unknown handler
inline constexpr int kExitProtocol = 3;  // malformed frame or unexpected message from the supervisor
inline constexpr int kExitFatal = 4;     // the handler threw (FatalError or a bug); Fatal was sent
inline constexpr int kExitStartup = protocol::kExecutorExitStartup;  // the queue cannot start; Fatal was sent
inline constexpr int kExitIdle = protocol::kExecutorExitIdle;        // idle for idle_exit_after

// Sends Ready{getpid(), handler_name} on `fd`, then answers each RunUnit with
// one UnitResult until the supervisor closes the socket, or until no unit
// came for `idle_exit_after` (zero: never), which returns kExitIdle. Blocks
// on the socket and in the handler. Returns one of the exit codes above,
// having written why to stderr unless it is kExitOk. Never throws.
int serve(int fd, Handler& handler, std::string_view handler_name,
          std::chrono::milliseconds idle_exit_after = std::chrono::milliseconds(0)) noexcept;

// The whole program: `inferq-executor --fd N --queue NAME (--handler HANDLER
// | --config FILE) [--parent-pid PID]`, or `inferq-executor make-models DIR`.
// With --config it serves queue NAME of that file (a model queue: loaded,
// checked and warmed up first; a problem is sent as Fatal, naming the queue
// and key, and exits kExitStartup). Sets PR_SET_PDEATHSIG(SIGKILL), ignores
// SIGINT (the supervisor decides what a Ctrl-C means) and exits if the
// supervisor is already gone, then serves. Returns the exit code.
int executor_main(int argc, char** argv) noexcept;

}  // namespace inferq::executor
