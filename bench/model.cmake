find_package(Torch REQUIRED)
add_executable(inferq-bench-model ${CMAKE_CURRENT_LIST_DIR}/bench_model.cpp)
target_link_libraries(inferq-bench-model PRIVATE inferq_test_support inferq_supervisor PkgConfig::PQXX ${TORCH_LIBRARIES} inferq_warnings)
add_dependencies(inferq-bench-model inferq inferq-executor)
