# Unit tests for src/metrics: the registry and exposition, the HTTP server on
# loopback, the NVML sampler without NVML. No database.
foreach(t metrics http_server gpu_sampler)
  inferq_test(test_metrics_${t} SOURCES unit/test_metrics_${t}.cpp
    LIBS inferq_metrics inferq_test_support LABELS unit TIMEOUT 30)
endforeach()
