#pragma once
// Validation of API request bodies. A body is applied onto a target object field by
// field (so one function serves create, PUT and PATCH); then the whole object is checked.
// Read-only fields are ignored, unknown fields are rejected.
#include <optional>

#include <simdjson.h>

#include "core/api_error.hpp"
#include "core/model.hpp"

namespace hookd {

struct webhook_limits {
  double min_interval_minutes = 1;
  int max_page_limit = 1000;
};

// Applies the fields present in `body` (which must be a JSON object) onto `target`.
std::optional<api_error> apply_webhook_body(simdjson::dom::element body, webhook& target);
// Checks required fields, enums and ranges of a complete webhook.
std::optional<api_error> validate_webhook(const webhook& h, const webhook_limits& limits);

std::optional<api_error> apply_connection_body(simdjson::dom::element body, connection& target);
std::optional<api_error> validate_connection(const connection& c);

// "http(s)://host[:port][/...]" with a non-empty host; returns an error message or nullopt.
std::optional<std::string> check_http_url(std::string_view url);

// Joins values as "a, b, c" for messages that list the valid values.
std::string join_values(std::span<const std::string_view> values);

}  // namespace hookd
