# Integration tests that run the real `inferq` daemon and `inferq-executor`
# against PostgreSQL: keyed order, graceful shutdown, PostgreSQL crash-restarts,
# bad input at the CLI and at start-up, two daemons sharing a queue. Each runs
# in well under 40 s on an idle machine; the timeouts leave room for a loaded one.
foreach(entry keyed_order:90 graceful_shutdown:90 pg_restart:150 bad_input:90 two_daemons:120 reload:90)
  string(REPLACE ":" ";" parts ${entry})
  list(GET parts 0 name)
  list(GET parts 1 timeout)
  inferq_test(test_${name} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${name}.cpp
    LIBS inferq_test_support LABELS integration TIMEOUT ${timeout})
  add_dependencies(test_${name} inferq inferq-executor)
endforeach()
