# Issue 3's statements: claim_more (batch.max_wait) and has_available_work (idle restart).
inferq_test(test_db_claim_more SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_db_claim_more.cpp
  LIBS inferq_db inferq_test_support PkgConfig::PQXX Threads::Threads LABELS pg TIMEOUT 60)
