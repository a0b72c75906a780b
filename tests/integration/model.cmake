# Issue 3: model queues served end to end by the real binaries (example models
# made by `inferq-executor make-models` into a temp dir; the raw forward pass
# for comparison runs in the test, hence torch).
find_package(Torch REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
inferq_test(test_model_queues SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_model_queues.cpp
  LIBS inferq_test_models nlohmann_json::nlohmann_json LABELS integration TIMEOUT 300)
add_dependencies(test_model_queues inferq inferq-executor)
# batch.max_wait: partial units topped up under their lease (migration 0002).
inferq_test(test_max_wait SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_max_wait.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 90)
add_dependencies(test_max_wait inferq inferq-executor)
# Issue 11: models exported from Python (tests/python/export_models.py, run
# with Debian's python3-torch and python3-torchvision) served end to end.
inferq_test(test_python_models SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_python_models.cpp
  LIBS inferq_test_support nlohmann_json::nlohmann_json LABELS integration TIMEOUT 400)
add_dependencies(test_python_models inferq inferq-executor)
# Issue 12 part 3: executors get malloc's huge pages (GLIBC_TUNABLES).
inferq_test(test_huge_pages SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_huge_pages.cpp
  LIBS inferq_test_support LABELS integration TIMEOUT 180)
add_dependencies(test_huge_pages inferq inferq-executor)
# Issue 21 item 4: binary tensors (payload_binary, binary_data_output) from
# SQL through the real binaries, checked against the raw forward pass.
inferq_test(test_binary_tensors SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_binary_tensors.cpp
  LIBS inferq_test_models nlohmann_json::nlohmann_json LABELS integration TIMEOUT 300)
add_dependencies(test_binary_tensors inferq inferq-executor)
