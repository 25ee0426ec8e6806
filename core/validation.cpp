#include "core/validation.hpp"

#include <algorithm>
#include <cmath>
#include <span>

#include "core/object_types.hpp"

namespace hookd {

using simdjson::dom::element;
using simdjson::dom::element_type;

std::string join_values(std::span<const std::string_view> values) {
  std::string out;
  for (auto v : values) {
    if (!out.empty()) out += ", ";
    out += v;
  }
  return out;
}

namespace {

using maybe_error = std::optional<api_error>;

const char* type_name(element_type t) {
  switch (t) {
    case element_type::ARRAY: return "an array";
    case element_type::OBJECT: return "an object";
    case element_type::INT64:
    case element_type::UINT64:
    case element_type::DOUBLE: return "a number";
    case element_type::STRING: return "a string";
    case element_type::BOOL: return "a boolean";
    case element_type::NULL_VALUE: return "null";
  }
  return "unknown";
}

api_error wrong_type(std::string_view field, const char* expected, element v) {
  return invalid_field(std::string(field), fmt::format("{} must be {}, not {}", field, expected,
                                                       type_name(v.type())));
}

// null resets a field to its default (empty); required fields are re-checked afterwards.
maybe_error read_string(std::string_view field, element v, std::string& out) {
  if (v.is_null()) {
    out.clear();
    return std::nullopt;
  }
  if (!v.is_string()) return wrong_type(field, "a string", v);
  out = std::string(v.get_string().value_unsafe());
  return std::nullopt;
}

maybe_error read_bool(std::string_view field, element v, bool& out, bool default_value) {
  if (v.is_null()) {
    out = default_value;
    return std::nullopt;
  }
  if (!v.is_bool()) return wrong_type(field, "a boolean", v);
  out = v.get_bool().value_unsafe();
  return std::nullopt;
}

maybe_error read_number(std::string_view field, element v, double& out) {
  if (!v.is_number()) return wrong_type(field, "a number", v);
  out = v.get_double().value_unsafe();
  return std::nullopt;
}

maybe_error read_int(std::string_view field, element v, int& out) {
  double d = 0;
  if (auto e = read_number(field, v, d)) return e;
  if (d != std::trunc(d))
    return invalid_field(std::string(field), fmt::format("{} must be an integer", field));
  if (std::fabs(d) > 1e9)
    return invalid_field(std::string(field),
                         fmt::format("{} is out of range: {}", field, json::format_number(d)));
  out = static_cast<int>(d);
  return std::nullopt;
}

maybe_error read_string_array(std::string_view field, element v, std::vector<std::string>& out) {
  if (v.is_null()) {
    out.clear();
    return std::nullopt;
  }
  if (!v.is_array()) return wrong_type(field, "an array of strings", v);
  std::vector<std::string> values;
  simdjson::dom::array items = v.get_array().value_unsafe();
  for (element item : items) {
    if (!item.is_string())
      return invalid_field(std::string(field), fmt::format("{} must contain only strings", field));
    values.emplace_back(item.get_string().value_unsafe());
  }
  out = std::move(values);
  return std::nullopt;
}

maybe_error read_string_map(std::string_view field, element v,
                            std::map<std::string, std::string>& out) {
  if (v.is_null()) {
    out.clear();
    return std::nullopt;
  }
  if (!v.is_object()) return wrong_type(field, "an object of strings", v);
  std::map<std::string, std::string> values;
  simdjson::dom::object members = v.get_object().value_unsafe();
  for (auto [k, item] : members) {
    if (!item.is_string())
      return invalid_field(fmt::format("{}.{}", field, std::string_view(k)),
                           fmt::format("{}.{} must be a string", field, std::string_view(k)));
    values.emplace(std::string(k), std::string(item.get_string().value_unsafe()));
  }
  out = std::move(values);
  return std::nullopt;
}

bool contains(std::span<const std::string_view> values, std::string_view v) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

maybe_error check_enum(std::string_view field, std::string_view value,
                       std::span<const std::string_view> valid) {
  if (contains(valid, value)) return std::nullopt;
  return invalid_field(std::string(field),
                       fmt::format("{} must be one of: {}", field, join_values(valid)));
}

maybe_error not_object(std::string_view what) {
  return api_error{400, "invalid_body", "", fmt::format("the body must be a JSON object ({})", what)};
}

maybe_error unknown_field(std::string_view k, std::span<const std::string_view> writable) {
  return api_error{400, "unknown_field", std::string(k),
                   fmt::format("unknown field '{}'; writable fields are: {}", k,
                               join_values(writable))};
}

constexpr std::string_view webhook_writable[] = {
    "connection_id", "hook_url", "object_type", "interval", "event", "fields", "webhook_type",
    "page_max_limit", "filters", "db_type", "db_url", "db_schema", "db_name_prefix", "is_paused",
    "is_beta"};
constexpr std::string_view webhook_read_only[] = {
    "id", "created_at", "updated_at", "workspace_id", "checked_at", "integration_type",
    "environment", "runs", "is_healthy"};

maybe_error apply_webhook_field(std::string_view k, element v, webhook& h) {
  if (k == "connection_id") return read_string(k, v, h.connection_id);
  if (k == "hook_url") return read_string(k, v, h.hook_url);
  if (k == "object_type") return read_string(k, v, h.object_type);
  if (k == "event") return read_string(k, v, h.event);
  if (k == "fields") return read_string(k, v, h.fields);
  if (k == "webhook_type") {
    if (v.is_null()) {
      h.webhook_type = "virtual";
      return std::nullopt;
    }
    return read_string(k, v, h.webhook_type);
  }
  if (k == "db_type") return read_string(k, v, h.db_type);
  if (k == "db_url") return read_string(k, v, h.db_url);
  if (k == "db_schema") return read_string(k, v, h.db_schema);
  if (k == "db_name_prefix") return read_string(k, v, h.db_name_prefix);
  if (k == "filters") return read_string_map(k, v, h.filters);
  if (k == "is_paused") return read_bool(k, v, h.is_paused, false);
  if (k == "is_beta") return read_bool(k, v, h.is_beta, false);
  if (k == "interval") return read_number(k, v, h.interval);
  if (k == "page_max_limit") return read_int(k, v, h.page_max_limit);
  if (contains(webhook_read_only, k)) return std::nullopt;
  return unknown_field(k, webhook_writable);
}

bool is_identifier(std::string_view s, bool allow_dot) {
  if (s.empty() || s.size() > 63) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || (allow_dot && c == '.');
  });
}

maybe_error validate_fields_list(std::string_view fields) {
  std::size_t start = 0;
  while (start <= fields.size()) {
    auto end = fields.find(',', start);
    if (end == std::string_view::npos) end = fields.size();
    auto name = fields.substr(start, end - start);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (!is_identifier(name, true))
      return invalid_field("fields", fmt::format("fields must be comma-separated field names; "
                                                 "'{}' is not one", name));
    start = end + 1;
  }
  return std::nullopt;
}

maybe_error validate_database_target(const webhook& h) {
  if (!h.db_type.empty()) {
    if (auto e = check_enum("db_type", h.db_type, db_types)) return e;
    if (h.db_url.empty()) return invalid_field("db_url", "db_url is required when db_type is set");
  }
  if (!h.db_url.empty()) {
    if (h.db_type.empty()) return invalid_field("db_type", "db_type is required when db_url is set");
    if (!h.db_url.starts_with("postgres://") && !h.db_url.starts_with("postgresql://"))
      return invalid_field("db_url", "db_url must be a postgres:// or postgresql:// URL");
  }
  if (!h.db_schema.empty() && !is_identifier(h.db_schema, false))
    return invalid_field("db_schema", "db_schema must be an identifier (letters, digits, _)");
  if (!h.db_name_prefix.empty() && !is_identifier(h.db_name_prefix, false))
    return invalid_field("db_name_prefix",
                         "db_name_prefix must be letters, digits and _ (at most 63)");
  return std::nullopt;
}

}  // namespace

std::optional<std::string> check_http_url(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("https://")) rest = url.substr(8);
  else if (url.starts_with("http://")) rest = url.substr(7);
  else return "must be an absolute http:// or https:// URL";
  if (url.size() > 2048) return "must be at most 2048 characters";
  auto host_end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, host_end);
  if (authority.find('@') != std::string_view::npos) return "must not contain credentials";
  std::string_view host = authority;
  if (host.starts_with("[")) {
    auto close = host.find(']');
    if (close == std::string_view::npos) return "has an invalid IPv6 host";
    auto after = host.substr(close + 1);
    if (!after.empty() && !after.starts_with(":")) return "has an invalid host";
    host = host.substr(1, close - 1);
  } else if (auto colon = host.find(':'); colon != std::string_view::npos) {
    auto port = host.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(std::string(port)) > 65535 || std::stoi(std::string(port)) == 0)
      return "has an invalid port";
    host = host.substr(0, colon);
  }
  if (host.empty()) return "must name a host";
  for (unsigned char c : url)
    if (c <= 0x20 || c == 0x7f) return "must not contain spaces or control characters";
  return std::nullopt;
}

std::optional<api_error> apply_webhook_body(element body, webhook& target) {
  if (!body.is_object()) return not_object("a Webhook");
  webhook next = target;  // the target changes only if the whole body is valid
  simdjson::dom::object members = body.get_object().value_unsafe();
  for (auto [k, v] : members) {
    if (auto e = apply_webhook_field(k, v, next)) return e;
  }
  target = std::move(next);
  return std::nullopt;
}

std::optional<api_error> validate_webhook(const webhook& h, const webhook_limits& limits) {
  if (h.connection_id.empty()) return invalid_field("connection_id", "connection_id is required");
  if (h.object_type.empty()) return invalid_field("object_type", "object_type is required");
  if (!is_unified_object_type(h.object_type))
    return invalid_field("object_type",
                         fmt::format("object_type '{}' is not a Unified object type",
                                     h.object_type));
  if (h.event.empty())
    return invalid_field("event", "event is required; one of: created, updated, deleted");
  if (auto e = check_enum("event", h.event, webhook_events)) return e;
  if (auto e = check_enum("webhook_type", h.webhook_type, webhook_types)) return e;
  if (!std::isfinite(h.interval) || h.interval < limits.min_interval_minutes - 1e-9)
    return invalid_field("interval",
                         fmt::format("interval is in minutes and must be at least {}",
                                     json::format_number(limits.min_interval_minutes)));
  if (h.interval > 60 * 24 * 366)
    return invalid_field("interval", "interval must be at most a year (527040 minutes)");
  if (h.page_max_limit < 1 || h.page_max_limit > limits.max_page_limit)
    return invalid_field("page_max_limit", fmt::format("page_max_limit must be between 1 and {}",
                                                       limits.max_page_limit));
  if (!h.hook_url.empty()) {
    if (auto msg = check_http_url(h.hook_url))
      return invalid_field("hook_url", "hook_url " + *msg);
  } else if (h.db_url.empty()) {
    return invalid_field("hook_url", "hook_url is required (or db_type and db_url)");
  }
  if (!h.fields.empty())
    if (auto e = validate_fields_list(h.fields)) return e;
  if (auto e = validate_database_target(h)) return e;
  return std::nullopt;
}

namespace {

constexpr std::string_view connection_writable[] = {
    "integration_type", "integration_name", "categories", "permissions", "auth",
    "environment", "external_xref", "is_paused"};
constexpr std::string_view connection_read_only[] = {
    "id", "created_at", "updated_at", "workspace_id", "last_healthy_at", "last_unhealthy_at",
    "last_unhealthy_code", "secretsmanager_id", "secretsmanager_key"};

maybe_error apply_connection_field(std::string_view k, element v, connection& c) {
  if (k == "integration_type") return read_string(k, v, c.integration_type);
  if (k == "integration_name") return read_string(k, v, c.integration_name);
  if (k == "categories") return read_string_array(k, v, c.categories);
  if (k == "permissions") return read_string_array(k, v, c.permissions);
  if (k == "external_xref") return read_string(k, v, c.external_xref);
  if (k == "environment") {
    if (v.is_null()) {
      c.environment = "Production";
      return std::nullopt;
    }
    return read_string(k, v, c.environment);
  }
  if (k == "is_paused") return read_bool(k, v, c.is_paused, false);
  if (k == "auth") {
    if (v.is_null()) {
      c.auth_json = "{}";
      return std::nullopt;
    }
    if (!v.is_object()) return wrong_type(k, "an object", v);
    c.auth_json = json::to_string(v);
    return std::nullopt;
  }
  if (contains(connection_read_only, k)) return std::nullopt;
  return unknown_field(k, connection_writable);
}

}  // namespace

std::optional<api_error> apply_connection_body(element body, connection& target) {
  if (!body.is_object()) return not_object("a Connection");
  connection next = target;
  simdjson::dom::object members = body.get_object().value_unsafe();
  for (auto [k, v] : members) {
    if (auto e = apply_connection_field(k, v, next)) return e;
  }
  target = std::move(next);
  return std::nullopt;
}

std::optional<api_error> validate_connection(const connection& c) {
  if (c.integration_type.empty())
    return invalid_field("integration_type", "integration_type is required");
  if (c.environment.empty()) return invalid_field("environment", "environment must not be empty");
  if (c.auth_json.size() > 64 * 1024)
    return invalid_field("auth", "auth must be at most 64 KiB of JSON");
  return std::nullopt;
}

}  // namespace hookd
