# Issue 13: batch.max_bytes bounds a unit's payload bytes, end to end.
inferq_test(test_unit_bytes SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_unit_bytes.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 120)
add_dependencies(test_unit_bytes inferq inferq-executor)
