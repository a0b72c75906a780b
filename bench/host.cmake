find_package(Torch REQUIRED)
add_executable(inferq-bench-host ${CMAKE_CURRENT_LIST_DIR}/bench_host.cpp)
target_link_libraries(inferq-bench-host PRIVATE inferq_test_support PkgConfig::PQXX ${TORCH_LIBRARIES} inferq_warnings)
add_dependencies(inferq-bench-host inferq inferq-executor)
