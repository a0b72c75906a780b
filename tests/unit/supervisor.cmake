# Unit tests for src/supervisor's pure logic: fast, no database.
inferq_test(test_supervisor_queue_sampler SOURCES unit/test_supervisor_queue_sampler.cpp
  LIBS inferq_supervisor LABELS unit TIMEOUT 30)
inferq_test(test_supervisor_executor_env SOURCES unit/test_supervisor_executor_env.cpp
  LIBS inferq_supervisor LABELS unit TIMEOUT 30)
inferq_test(test_supervisor_unit_outcome SOURCES unit/test_supervisor_unit_outcome.cpp
  LIBS inferq_supervisor LABELS unit TIMEOUT 30)
inferq_test(test_supervisor_slot SOURCES unit/test_supervisor_slot.cpp
  LIBS inferq_supervisor LABELS unit TIMEOUT 30)
inferq_test(test_supervisor_tick_db SOURCES unit/test_supervisor_tick_db.cpp
  LIBS inferq_supervisor inferq_test_support LABELS unit TIMEOUT 30)
# The tick's logic on an in-memory database, with the real inferq-executor.
inferq_test(test_supervisor_supervisor SOURCES unit/test_supervisor_supervisor.cpp
  LIBS inferq_supervisor inferq_test_support LABELS unit TIMEOUT 60)
