# src/db statements that feed the metrics (completion outcomes, claim wait,
# backlog sample), against the harness's PostgreSQL.
inferq_test(test_db_queue_ops_metrics SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_db_queue_ops_metrics.cpp
  LIBS inferq_db inferq_test_support PkgConfig::PQXX Threads::Threads LABELS pg TIMEOUT 60)
