# Issue 3: payload decoding/encoding (no torch) and the model handler in-process
# (torch; builds the example models into a temp dir).
find_package(Torch REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
inferq_test(test_executor_payload SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_executor_payload.cpp
  LIBS inferq_payload LABELS unit TIMEOUT 60)
inferq_test(test_executor_model_handler SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_executor_model_handler.cpp
  LIBS inferq_model inferq_test_models nlohmann_json::nlohmann_json LABELS unit TIMEOUT 240)
# Issue 3 part 5: the fault policy, with callables and on the fault-injection
# model (tests/faultlib).
inferq_test(test_executor_fault_policy SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_executor_fault_policy.cpp
  LIBS inferq_model inferq_test_support nlohmann_json::nlohmann_json ${TORCH_LIBRARIES} LABELS unit TIMEOUT 120)
target_compile_definitions(test_executor_fault_policy PRIVATE ${INFERQ_FAULTLIB_DEFINES})
add_dependencies(test_executor_fault_policy inferq_faultlib inferq-make-fault-models)
