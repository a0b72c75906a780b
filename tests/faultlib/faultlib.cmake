# Issue 3, part 6: the fault-injection op library (libinferq_faultlib.so) and
# the program that writes the test model calling its ops. Test-only.
find_package(Torch REQUIRED)
add_library(inferq_faultlib SHARED ${CMAKE_CURRENT_LIST_DIR}/faultlib.cpp)
target_include_directories(inferq_faultlib PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(inferq_faultlib PRIVATE ${TORCH_LIBRARIES} inferq_warnings)

add_executable(inferq-make-fault-models ${CMAKE_CURRENT_LIST_DIR}/make_fault_models.cpp)
target_include_directories(inferq-make-fault-models PRIVATE ${CMAKE_CURRENT_LIST_DIR}/..)
target_link_libraries(inferq-make-fault-models PRIVATE inferq_faultlib ${TORCH_LIBRARIES} inferq_warnings)

# What a test needs to make and serve the fault model: paths of both, and
# build dependencies on them.
set(INFERQ_FAULTLIB_DEFINES
  INFERQ_FAULTLIB_PATH="$<TARGET_FILE:inferq_faultlib>"
  INFERQ_MAKE_FAULT_MODELS="$<TARGET_FILE:inferq-make-fault-models>")
