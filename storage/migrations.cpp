#include "storage/migrations.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace hookd::storage {
namespace {
// An arbitrary constant: the advisory lock that serialises migrations across instances.
constexpr long long migration_lock_key = 0x686f6f6b64;  // "hookd"

const std::vector<migration> migrations = {
#include "migrations.inc"
};
}  // namespace

const std::vector<migration>& all_migrations() { return migrations; }

int latest_migration_version() {
  int v = 0;
  for (const auto& m : migrations) v = std::max(v, m.version);
  return v;
}

int applied_migration_version(pqxx::connection& c) {
  pqxx::work tx(c);
  auto exists = tx.exec1("select to_regclass('hookd_schema_migrations') is not null")[0].as<bool>();
  if (!exists) return 0;
  auto r = tx.exec1("select coalesce(max(version), 0) from hookd_schema_migrations");
  return r[0].as<int>();
}

namespace {
void exec_session(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction session(c);
  session.exec(sql);
}

int apply_pending(pqxx::connection& c) {
  exec_session(c,
               "create table if not exists hookd_schema_migrations ("
               " version integer primary key, name text not null,"
               " applied_at timestamptz not null default now())");
  int current = applied_migration_version(c);
  int applied = 0;
  for (const auto& m : migrations) {
    if (m.version <= current) continue;
    pqxx::work tx(c);
    tx.exec0(std::string(m.sql));
    tx.exec0(fmt::format("insert into hookd_schema_migrations(version, name) values ({}, '{}')",
                         m.version, tx.esc(std::string(m.name))));
    tx.commit();
    spdlog::info("applied database migration {} ({})", m.version, m.name);
    ++applied;
  }
  return applied;
}
}  // namespace

int apply_migrations(pqxx::connection& c) {
  // A session-level lock held across the per-migration transactions.
  const auto key = std::to_string(migration_lock_key);
  exec_session(c, "select pg_advisory_lock(" + key + ")");
  try {
    int applied = apply_pending(c);
    exec_session(c, "select pg_advisory_unlock(" + key + ")");
    return applied;
  } catch (...) {
    if (c.is_open()) exec_session(c, "select pg_advisory_unlock(" + key + ")");
    throw;
  }
}

}  // namespace hookd::storage
