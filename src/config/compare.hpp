#pragma once

#include <string>
#include <vector>

#include "config/settings.hpp"

// What a reload (SIGHUP) compares: which queues changed, and which settings
// only a restart applies.
namespace inferq::config {

// True when an executor started for `a` would run exactly as one for `b`
// (every key but `instances`, which a reload applies by adding or retiring
// executors). The model file's contents are not compared here.
bool same_executor_settings(const QueueSettings& a, const QueueSettings& b);

// The top-level sections of `next` that differ from `running` and that a
// reload does not apply (database, worker, metrics, logging), in that order.
std::vector<std::string> restart_only_changes(const Settings& running, const Settings& next);

}  // namespace inferq::config
