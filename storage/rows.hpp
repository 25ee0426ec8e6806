#pragma once
// Row mappings shared by the repositories of one module (not part of storage's interface).
#include <string>

#include <pqxx/pqxx>

#include "core/crypto.hpp"
#include "core/model.hpp"

namespace hookd::storage {

// The webhook columns webhook_from_row reads, in its order (unqualified names of `webhooks`).
extern const std::string webhook_columns;
webhook webhook_from_row(const pqxx::row& r, const crypto::cipher& cipher);

}  // namespace hookd::storage
