#include "executor/run_loop.hpp"

int main(int argc, char** argv) { return inferq::executor::executor_main(argc, argv); }
