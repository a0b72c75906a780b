add_executable(inferq-bench-prune ${CMAKE_CURRENT_LIST_DIR}/bench_prune.cpp)
target_link_libraries(inferq-bench-prune PRIVATE inferq_test_support PkgConfig::PQXX inferq_warnings)
add_dependencies(inferq-bench-prune inferq inferq-executor)
