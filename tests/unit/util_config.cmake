# Unit tests for src/util and src/config: fast, no database.
inferq_test(test_util_duration SOURCES unit/test_util_duration.cpp LIBS inferq_util LABELS unit TIMEOUT 30)
inferq_test(test_util_backoff SOURCES unit/test_util_backoff.cpp LIBS inferq_util LABELS unit TIMEOUT 30)
inferq_test(test_util_clock SOURCES unit/test_util_clock.cpp LIBS inferq_util Threads::Threads LABELS unit TIMEOUT 30)
inferq_test(test_util_fd SOURCES unit/test_util_fd.cpp LIBS inferq_util LABELS unit TIMEOUT 30)
inferq_test(test_util_scope_guard SOURCES unit/test_util_scope_guard.cpp LIBS inferq_util LABELS unit TIMEOUT 30)
inferq_test(test_util_log_fields SOURCES unit/test_util_log_fields.cpp LIBS inferq_util Threads::Threads LABELS unit TIMEOUT 30)
inferq_test(test_util_json_check SOURCES unit/test_util_json_check.cpp LIBS inferq_util LABELS unit TIMEOUT 30)
inferq_test(test_config_config SOURCES unit/test_config_config.cpp LIBS inferq_config LABELS unit TIMEOUT 30)
