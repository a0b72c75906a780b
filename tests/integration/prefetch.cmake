# Issue 12: a busy slot claims its next unit ahead (queue prefetch).
inferq_test(test_prefetch SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_prefetch.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 120)
add_dependencies(test_prefetch inferq inferq-executor)
