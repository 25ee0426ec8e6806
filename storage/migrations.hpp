#pragma once
// Versioned SQL migrations compiled into the binary (storage/migrations/NNNN_name.sql).
#include <string>
#include <string_view>
#include <vector>

#include <pqxx/pqxx>

namespace hookd::storage {

struct migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

const std::vector<migration>& all_migrations();
int latest_migration_version();

// Applies every migration not yet applied, each in its own transaction, under a
// PostgreSQL advisory lock so that instances starting together apply each exactly once.
// Returns the number applied.
int apply_migrations(pqxx::connection& c);

// The highest applied version (0 when none).
int applied_migration_version(pqxx::connection& c);

}  // namespace hookd::storage
