add_executable(inferq-bench-metrics ${CMAKE_CURRENT_LIST_DIR}/bench_metrics.cpp)
target_link_libraries(inferq-bench-metrics PRIVATE inferq_test_support inferq_warnings)
add_dependencies(inferq-bench-metrics inferq inferq-executor)
