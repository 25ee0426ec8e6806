#pragma once
// Small helpers for building SQL with libpqxx 6.4, which has no container parameters.
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "core/time.hpp"

namespace hookd::storage {

// A PostgreSQL array literal of text, e.g. {"a","b \"c\""}, for `::text[]` casts.
std::string text_array_literal(const std::vector<std::string>& values);

// to_timestamp(<ms>/1000.0) for a time.
std::string timestamp_sql(pqxx::transaction_base& tx, sys_time t);

// (extract(epoch from <column>) * 1000)::bigint
std::string millis_of(std::string_view column);

}  // namespace hookd::storage
