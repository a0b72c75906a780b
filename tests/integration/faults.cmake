# Issue 3 parts 5-6: GPU fault handling through the real binaries, on the
# fault-injection model (tests/faultlib/faultlib.cmake).
find_package(nlohmann_json 3.9 REQUIRED)
inferq_test(test_faults SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_faults.cpp
  LIBS inferq_test_support nlohmann_json::nlohmann_json LABELS integration TIMEOUT 240)
target_compile_definitions(test_faults PRIVATE ${INFERQ_FAULTLIB_DEFINES})
add_dependencies(test_faults inferq inferq-executor inferq_faultlib inferq-make-fault-models)
