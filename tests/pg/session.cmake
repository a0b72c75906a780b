# src/db/session without a server: redaction and the connection's TCP bounds.
inferq_test(test_db_session SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_db_session.cpp
  LIBS inferq_db PkgConfig::PQXX Threads::Threads LABELS pg TIMEOUT 60)
