# The example models, their inputs and the raw forward pass for the tests
# that serve models (links torch, so apart from inferq_test_support).
find_package(Torch REQUIRED)
add_library(inferq_test_models STATIC ${CMAKE_CURRENT_LIST_DIR}/models/example_models.cpp)
target_link_libraries(inferq_test_models PUBLIC inferq_test_support ${TORCH_LIBRARIES} PRIVATE inferq_warnings)
