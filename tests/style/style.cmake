# House style that a tool can check: formatting by the pinned clang-format.
add_test(NAME test_format COMMAND ${CMAKE_CURRENT_LIST_DIR}/check_format.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(test_format PROPERTIES TIMEOUT 120 LABELS "unit;style")
