# src/protocol and src/executor (the executor process itself: integration/executor.cmake).
inferq_test(test_protocol_messages SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_protocol_messages.cpp
  LIBS inferq_protocol LABELS unit TIMEOUT 60)
inferq_test(test_protocol_channel SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_protocol_channel.cpp
  LIBS inferq_protocol Threads::Threads LABELS unit TIMEOUT 60)
inferq_test(test_executor_handlers SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_executor_handlers.cpp
  LIBS inferq_executor_lib LABELS unit TIMEOUT 60)
inferq_test(test_executor_run_loop SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_executor_run_loop.cpp
  LIBS inferq_executor_lib Threads::Threads LABELS unit TIMEOUT 60)
