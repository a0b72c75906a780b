# Checks of deploy/ (label deploy): the Prometheus alerts and their promtool
# unit tests, the sample Prometheus config, and the Grafana dashboard, all
# against deploy/metrics.txt. promtool (Debian package prometheus) and python3
# are looked up when the test runs; a missing one fails the test.
set(deploy_dir ${PROJECT_SOURCE_DIR}/deploy)
set(run_tool ${CMAKE_CURRENT_SOURCE_DIR}/deploy/run_tool.sh)
set(check_deploy ${CMAKE_CURRENT_SOURCE_DIR}/deploy/check_deploy.py)

add_test(NAME deploy_promtool_check_rules
  COMMAND ${run_tool} prometheus promtool check rules ${deploy_dir}/prometheus/inferq-alerts.yml)
add_test(NAME deploy_promtool_test_rules
  COMMAND ${run_tool} prometheus promtool test rules ${deploy_dir}/prometheus/inferq-alerts.test.yml)
add_test(NAME deploy_promtool_check_config
  COMMAND ${run_tool} prometheus promtool check config ${deploy_dir}/prometheus/prometheus.yml)
add_test(NAME deploy_rules_metrics
  COMMAND ${run_tool} python3 python3 ${check_deploy} rules ${PROJECT_SOURCE_DIR})
add_test(NAME deploy_dashboard
  COMMAND ${run_tool} python3 python3 ${check_deploy} dashboard ${PROJECT_SOURCE_DIR})
add_test(NAME deploy_dashboard_promql
  COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/deploy/check_dashboard_promql.sh ${PROJECT_SOURCE_DIR}
    ${CMAKE_CURRENT_BINARY_DIR}/deploy)
set_tests_properties(deploy_promtool_check_rules deploy_promtool_test_rules deploy_promtool_check_config
  deploy_rules_metrics deploy_dashboard deploy_dashboard_promql PROPERTIES LABELS deploy TIMEOUT 60)
