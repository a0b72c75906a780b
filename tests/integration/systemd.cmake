# The daemon under a service manager: sd_notify READY/WATCHDOG/STOPPING to a
# socket the test owns, with the database up, down at start-up and lost.
inferq_test(test_systemd_notify SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_systemd_notify.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 120)
add_dependencies(test_systemd_notify inferq inferq-executor)
