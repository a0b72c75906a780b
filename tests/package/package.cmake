# The systemd unit (systemd-analyze security/verify, offline) and the .deb
# CPack builds (metadata, contents, a scratch-root unpack). Scripts, since
# they drive cmake --install, cpack, dpkg-deb and systemd-analyze.
add_test(NAME test_systemd_unit
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/check_unit.sh ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}
    ${INFERQ_SYSTEMD_UNITDIR})
set_tests_properties(test_systemd_unit PROPERTIES TIMEOUT 60 LABELS "unit;systemd")
add_test(NAME test_package
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/check_package.sh ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}
    ${PROJECT_VERSION} ${CMAKE_INSTALL_PREFIX} ${INFERQ_CONFIG_DIR} ${INFERQ_SYSTEMD_UNITDIR})
set_tests_properties(test_package PROPERTIES TIMEOUT 180 LABELS "package")
