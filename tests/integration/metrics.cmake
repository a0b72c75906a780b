# Integration tests of the metrics and health endpoints against the real
# daemon, and a real Prometheus server scraping it (Debian's `prometheus`).
foreach(entry metrics_endpoint:150 prometheus_scrape:120)
  string(REPLACE ":" ";" parts ${entry})
  list(GET parts 0 name)
  list(GET parts 1 timeout)
  inferq_test(test_${name} SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${name}.cpp
    LIBS inferq_test_support LABELS integration TIMEOUT ${timeout})
  add_dependencies(test_${name} inferq inferq-executor)
endforeach()

# logging.format json, checked with a real JSON parser.
find_package(nlohmann_json 3.9 REQUIRED)
inferq_test(test_json_logs SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_json_logs.cpp
  LIBS inferq_test_support nlohmann_json::nlohmann_json LABELS integration TIMEOUT 60)
add_dependencies(test_json_logs inferq inferq-executor)
