# Installation layout and the Debian package (CPack DEB).
#
#   cmake --install build [--prefix P]      (DESTDIR=... for a scratch root)
#   cd build && cpack -G DEB                 -> inferq_<version>-1_<arch>.deb
#
# With the default prefix /usr: /usr/bin/{inferq,inferq-executor},
# /etc/inferq/inferq.yaml (a conffile: upgrades never overwrite an edited
# one), /usr/share/inferq/migrations/*.sql (for reference; the binary embeds
# them), /usr/share/inferq/models/ (example models), the systemd unit in
# systemd's unit directory and the README under /usr/share/doc/inferq.
include(GNUInstallDirs)

install(TARGETS inferq-executor RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Absolute on purpose: with prefix /usr, GNUInstallDirs gives /etc.
set(INFERQ_CONFIG_DIR "${CMAKE_INSTALL_FULL_SYSCONFDIR}/inferq")
install(FILES config/inferq.example.yaml DESTINATION ${INFERQ_CONFIG_DIR} RENAME inferq.yaml)
install(FILES config/inferq.example.yaml README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY migrations/ DESTINATION ${CMAKE_INSTALL_DATADIR}/inferq/migrations
  FILES_MATCHING PATTERN "*.sql")
# Filled by `inferq-executor make-models` where the build provides it.
install(DIRECTORY DESTINATION ${CMAKE_INSTALL_DATADIR}/inferq/models)

# The unit goes where systemd looks: systemd.pc's systemdsystemunitdir
# (/lib/systemd/system on Debian 12) for a /usr install, else below the
# prefix (systemd also reads /usr/local/lib/systemd/system).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  pkg_get_variable(INFERQ_PC_UNITDIR systemd systemdsystemunitdir)
  if(NOT INFERQ_PC_UNITDIR)
    set(INFERQ_PC_UNITDIR /lib/systemd/system)
  endif()
else()
  set(INFERQ_PC_UNITDIR "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()
set(INFERQ_SYSTEMD_UNITDIR "${INFERQ_PC_UNITDIR}" CACHE PATH "Where the systemd unit is installed")

# systemd/inferq.service names /usr/bin and /etc; another prefix gets a copy
# naming its own paths (identical for /usr).
file(READ ${PROJECT_SOURCE_DIR}/systemd/inferq.service inferq_unit)
string(REPLACE "/usr/bin/inferq " "${CMAKE_INSTALL_FULL_BINDIR}/inferq " inferq_unit "${inferq_unit}")
string(REPLACE "/etc/inferq/inferq.yaml" "${INFERQ_CONFIG_DIR}/inferq.yaml" inferq_unit "${inferq_unit}")
file(WRITE ${PROJECT_BINARY_DIR}/packaging/inferq.service "${inferq_unit}")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/systemd/inferq.service)
install(FILES ${PROJECT_BINARY_DIR}/packaging/inferq.service DESTINATION ${INFERQ_SYSTEMD_UNITDIR})

if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "packaging: prefix ${CMAKE_INSTALL_PREFIX}; the .deb is meant for -DCMAKE_INSTALL_PREFIX=/usr")
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME inferq)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "inferq")
set(CPACK_PACKAGE_CONTACT "inferq maintainers <inferq@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "daemon that runs inference jobs queued in PostgreSQL")
set(CPACK_PACKAGE_DESCRIPTION
  "inferq claims jobs that producers insert into PostgreSQL with plain SQL, runs\n"
  "TorchScript models (or built-in handlers) in separate executor processes under\n"
  "per-unit deadlines, writes results back with fenced writes and exposes\n"
  "Prometheus metrics. Ships a hardened systemd unit (Type=notify, watchdog).")
string(CONCAT CPACK_PACKAGE_DESCRIPTION ${CPACK_PACKAGE_DESCRIPTION})
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies come from dpkg-shlibdeps; adduser runs in postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "postgresql-client")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${PROJECT_SOURCE_DIR}/packaging/debian/conffiles;${PROJECT_SOURCE_DIR}/packaging/debian/postinst;${PROJECT_SOURCE_DIR}/packaging/debian/prerm;${PROJECT_SOURCE_DIR}/packaging/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/package)
include(CPack)
