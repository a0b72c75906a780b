# Tests that run the real `inferq run` daemons (and the CLI) against a
# database of the harness's PostgreSQL: reaping, deadlines, fencing, crashes.
foreach(t reap_while_full deadline fencing kill9 crash cli wake)
  inferq_test(test_${t} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${t}.cpp
    LIBS inferq_test_support LABELS integration TIMEOUT 60)
  add_dependencies(test_${t} inferq inferq-executor)
endforeach()
