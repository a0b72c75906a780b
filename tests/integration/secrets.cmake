# Issue 13: the database password stays out of logs and executors.
inferq_test(test_secrets SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_secrets.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 120)
add_dependencies(test_secrets inferq inferq-executor)
