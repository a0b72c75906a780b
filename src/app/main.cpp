#include "app/cli.hpp"

int main(int argc, char** argv) { return inferq::app::run_cli(argc, argv); }
