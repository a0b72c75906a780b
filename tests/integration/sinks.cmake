# Issue 12: a queue's sink writes results into the user's own table, end to end.
inferq_test(test_sinks SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_sinks.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 120)
add_dependencies(test_sinks inferq inferq-executor)
