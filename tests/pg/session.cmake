# src/db/session without a server: redaction and the connection's TCP bounds.
inferq_test(test_db_session SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_db_session.cpp
  LIBS inferq_db inferq_test_support PkgConfig::PQXX Threads::Threads LABELS pg TIMEOUT 60)

# A peer frozen mid-statement, through a TCP proxy in the test, to the harness's PostgreSQL.
inferq_test(test_db_frozen_peer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_db_frozen_peer.cpp
  LIBS inferq_db inferq_test_support PkgConfig::PQXX Threads::Threads LABELS pg TIMEOUT 90)
