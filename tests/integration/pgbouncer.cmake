# Issue 12: inferq behind a real PgBouncer (Debian's pgbouncer), in session
# and transaction mode, started by the harness (tests/support/pg_bouncer).
inferq_test(test_pgbouncer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_pgbouncer.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 240)
add_dependencies(test_pgbouncer inferq inferq-executor)
