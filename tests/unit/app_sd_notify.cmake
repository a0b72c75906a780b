# The sd_notify datagrams of src/app/sd_notify: fast, no database.
inferq_test(test_app_sd_notify SOURCES unit/test_app_sd_notify.cpp
  LIBS inferq_app inferq_test_support LABELS unit TIMEOUT 30)
