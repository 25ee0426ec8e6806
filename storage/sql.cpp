#include "storage/sql.hpp"

#include <fmt/format.h>

namespace hookd::storage {

std::string text_array_literal(const std::vector<std::string>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    out.push_back('"');
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::string timestamp_sql(pqxx::transaction_base&, sys_time t) {
  return fmt::format("to_timestamp({}::double precision / 1000)", to_unix_millis(t));
}

std::string millis_of(std::string_view column) {
  return fmt::format("(extract(epoch from {}) * 1000)::bigint", column);
}

}  // namespace hookd::storage
