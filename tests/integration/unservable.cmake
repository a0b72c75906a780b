# Issue 13 item 1: a payload whose text cannot be made never wedges its queue,
# the other queues or the reaper.
inferq_test(test_unservable SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_unservable.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 120)
add_dependencies(test_unservable inferq inferq-executor)

# Issue 13 item 8: jobs of a queue that no daemon serves get a metric and a warning.
inferq_test(test_unserved_queue SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_unserved_queue.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 90)
add_dependencies(test_unserved_queue inferq inferq-executor)
