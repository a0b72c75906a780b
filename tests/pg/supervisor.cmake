# src/supervisor's threads that work on the database alone, against the
# harness's PostgreSQL.
inferq_test(test_supervisor_janitor SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_supervisor_janitor.cpp
  LIBS inferq_supervisor inferq_db inferq_test_support PkgConfig::PQXX Threads::Threads LABELS pg TIMEOUT 60)
inferq_test(test_supervisor_completion_writer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_supervisor_completion_writer.cpp
  LIBS inferq_supervisor inferq_db inferq_test_support PkgConfig::PQXX Threads::Threads LABELS pg TIMEOUT 60)
