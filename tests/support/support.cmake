# The test harness: throwaway PostgreSQL clusters (PgCluster), child
# processes (ChildProcess), paths and polling. Tests link inferq_test_support
# and include "support/<name>.hpp".
set(INFERQ_PG_BINDIR "/usr/lib/postgresql/15/bin" CACHE PATH
    "PostgreSQL server binaries the tests run (initdb, postgres)")

# Every .cpp here but doctest's main (other helpers, such as daemon.cpp,
# join the library by being dropped in this folder).
file(GLOB inferq_test_support_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cpp)
list(REMOVE_ITEM inferq_test_support_sources ${CMAKE_CURRENT_LIST_DIR}/doctest_main.cpp)
add_library(inferq_test_support STATIC ${inferq_test_support_sources})
target_include_directories(inferq_test_support PUBLIC ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(inferq_test_support PUBLIC inferq_db PkgConfig::PQXX Threads::Threads PRIVATE inferq_warnings)
# Fallbacks for running a test binary by hand, outside ctest; the cached
# template data directory lives in this build tree (<build>/tests/pg-template).
target_compile_definitions(inferq_test_support PRIVATE
  "INFERQ_DEFAULT_BIN_DIR=\"${PROJECT_BINARY_DIR}/src\""
  "INFERQ_DEFAULT_SOURCE_DIR=\"${PROJECT_SOURCE_DIR}\""
  "INFERQ_PG_BINDIR=\"${INFERQ_PG_BINDIR}\""
  "INFERQ_PG_TEMPLATE_DIR=\"${PROJECT_BINARY_DIR}/tests/pg-template\"")

inferq_test(test_support_child_process
  SOURCES ${PROJECT_SOURCE_DIR}/tests/unit/test_support_child_process.cpp
  LIBS inferq_test_support
  LABELS unit
  TIMEOUT 60)

inferq_test(test_support_pg_cluster
  SOURCES ${PROJECT_SOURCE_DIR}/tests/pg/test_support_pg_cluster.cpp
  LIBS inferq_test_support
  LABELS pg
  TIMEOUT 180)
