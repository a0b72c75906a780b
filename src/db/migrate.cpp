#include "db/migrate.hpp"

#include "db/error.hpp"
#include "db/raw.hpp"

namespace inferq::db {
namespace {

// Any fixed number works; it only has to be the same for every inferq.
constexpr long long kMigrateLockKey = 0x696e66657271LL;  // "inferq"

int read_version(pqxx::transaction_base& tx) {
  const auto exists = tx.exec("SELECT to_regclass('inferq.schema_migrations') IS NOT NULL");
  if (!exists[0][0].as<bool>()) return 0;
  const auto r = tx.exec("SELECT coalesce(max(version), 0) FROM inferq.schema_migrations");
  return r[0][0].as<int>();
}

// The digest migrate stored; empty when none (before 0015, or removed).
std::string read_digest(pqxx::transaction_base& tx) {
  const auto exists = tx.exec("SELECT to_regclass('inferq.schema_functions') IS NOT NULL");
  if (!exists[0][0].as<bool>()) return "";
  const auto r = tx.exec("SELECT digest FROM inferq.schema_functions");
  return r.empty() ? "" : r[0][0].as<std::string>();
}

}  // namespace

int latest_version() {
  const auto& all = embedded_migrations();
  return all.empty() ? 0 : all.back().version;
}

int schema_version(Session& session) {
  int version = 0;
  session.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    version = read_version(tx);
  });
  return version;
}

std::optional<std::string> schema_problem(Session& session) {
  int version = 0;
  std::string digest;
  session.run([&](Raw& raw) {
    pqxx::nontransaction tx(raw.conn);
    version = read_version(tx);
    if (version == latest_version()) digest = read_digest(tx);
  });
  if (version != latest_version()) {
    return "the database schema is at version " + std::to_string(version) + ", this inferq needs " +
           std::to_string(latest_version()) + ": run `inferq migrate`";
  }
  if (digest != functions_digest()) {
    return "the database's inferq functions are not this inferq's (stored digest " +
           (digest.empty() ? std::string("none") : digest.substr(0, 12)) + ", built in " +
           functions_digest().substr(0, 12) + "): run `inferq migrate`";
  }
  return std::nullopt;
}

MigrateReport migrate(Session& session) {
  MigrateReport report;
  session.run([&](Raw& raw) {
    report = MigrateReport{};
    // One transaction: a migration that drops a function (a signature
    // change) and the file that defines it again commit together, so no
    // daemon ever sees the schema without it. The lock is the
    // transaction's: its commit, its rollback or a lost connection ends it,
    // and through a transaction pooler it cannot stay behind on a server
    // connection that the next client gets. Read committed: the version read
    // after the lock is what the migrate before this one committed.
    pqxx::work tx(raw.conn);
    tx.exec("SELECT pg_advisory_xact_lock(" + std::to_string(kMigrateLockKey) + ")");
    report.from_version = read_version(tx);
    if (report.from_version > latest_version()) {
      throw DbError("the database schema is at version " + std::to_string(report.from_version) +
                        ", newer than this inferq knows (" + std::to_string(latest_version()) +
                        "): upgrade inferq",
                    false);
    }
    report.to_version = report.from_version;
    for (const auto& m : embedded_migrations()) {
      if (m.version <= report.to_version) continue;
      tx.exec(m.sql);
      // After the first migration applied, which may be 0001 (it makes schema inferq).
      if (report.applied.empty()) {
        tx.exec(
            "CREATE TABLE IF NOT EXISTS inferq.schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())");
      }
      tx.exec_params("INSERT INTO inferq.schema_migrations (version, name) VALUES ($1, $2)", m.version,
                     m.name);
      report.to_version = m.version;
      report.applied.push_back(m.name);
    }
    if (!report.applied.empty() || read_digest(tx) != functions_digest()) {
      // A function's body may call one defined in a later file.
      tx.exec("SET LOCAL check_function_bodies = off");
      for (const auto& f : embedded_functions()) tx.exec(f.sql);
      tx.exec_params(
          "INSERT INTO inferq.schema_functions (digest) VALUES ($1)"
          " ON CONFLICT (singleton) DO UPDATE SET digest = EXCLUDED.digest, applied_at = now()",
          functions_digest());
      report.functions_applied = true;
    }
    tx.commit();
  });
  return report;
}

}  // namespace inferq::db
