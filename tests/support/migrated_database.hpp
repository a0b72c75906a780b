#pragma once

#include <string>

namespace inferq::test {

// A fresh database in the shared cluster (PgCluster::shared()) with every
// migration applied through db::migrate; returns its URL.
std::string migrated_database();

}  // namespace inferq::test
