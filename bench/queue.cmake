add_executable(inferq-bench-queue ${CMAKE_CURRENT_LIST_DIR}/bench_queue.cpp)
target_link_libraries(inferq-bench-queue PRIVATE inferq_test_support PkgConfig::PQXX inferq_warnings)
add_dependencies(inferq-bench-queue inferq inferq-executor)
