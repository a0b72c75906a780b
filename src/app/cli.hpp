#pragma once

namespace inferq::app {

// The `inferq` command line: parses argv, runs the subcommand, returns the
// process exit code (0 ok, 1 failure, 2 usage or configuration error).
int run_cli(int argc, char** argv);

}  // namespace inferq::app
