# Starts the real inferq-executor binary (from $INFERQ_BIN_DIR).
inferq_test(test_executor_process SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_executor_process.cpp
  LIBS inferq_protocol LABELS integration TIMEOUT 60)
add_dependencies(test_executor_process inferq-executor)
