# src/db against the harness's PostgreSQL: migrations, the producer API and
# its role, the daemon's statements and the claim's cost at scale. Each file
# runs in well under 20 s (test_db_enqueue and test_db_unclaimable spend about
# 8 s each time they make a payload's text fail past 1 GB); every test case
# works in a database of its own.
foreach(name test_db_migrate test_db_enqueue test_db_claim test_db_complete test_db_leases test_db_notifications
             test_db_key_heads test_db_claim_scale test_db_maintenance_ops test_db_key_locks test_db_queue_ops_sinks
             test_db_producer_role test_db_unclaimable test_db_binary test_db_unique_jobs test_db_no_jit)
  inferq_test(${name} SOURCES ${CMAKE_CURRENT_LIST_DIR}/${name}.cpp
    LIBS inferq_db inferq_test_support PkgConfig::PQXX Threads::Threads LABELS pg TIMEOUT 120)
endforeach()
