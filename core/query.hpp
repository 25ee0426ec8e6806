#pragma once
// Query strings: decoding, and the list parameters of GET /unified/webhook and
// GET /unified/connection.
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/api_error.hpp"
#include "core/time.hpp"

namespace hookd {

// Percent-decodes (and '+' to space); nullopt on a malformed escape.
std::optional<std::string> url_decode(std::string_view s);

// name -> values, in order of appearance. nullopt on a malformed escape.
using query_params = std::multimap<std::string, std::string>;
std::optional<query_params> parse_query(std::string_view query);

struct list_query {
  int limit = 100;
  int offset = 0;
  std::optional<sys_time> updated_gte;
  std::optional<sys_time> created_lte;
  std::string sort = "created_at";  // created_at | updated_at | name
  bool descending = false;
  std::string env;
  // webhooks
  std::string object_type;
  std::string integration_type;
  std::string connection_id;
  std::optional<bool> is_healthy;
  // connections
  std::vector<std::string> categories;
  std::string external_xref;
};

enum class list_kind { webhooks, connections };

// Validates every parameter; an unknown parameter is an error naming it.
std::variant<list_query, api_error> parse_list_query(const query_params& params, list_kind kind);

// Reads a boolean query parameter ("true"/"false"/"1"/"0"); error naming the parameter.
std::variant<bool, api_error> parse_bool_param(std::string_view name, std::string_view value);

}  // namespace hookd
