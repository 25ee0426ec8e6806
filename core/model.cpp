#include "core/model.hpp"

#include <algorithm>

namespace hookd {

void write_json(json::writer& w, const webhook& h) {
  w.begin_object();
  w.field("id", h.id);
  w.field("created_at", format_iso8601(h.created_at));
  w.field("updated_at", format_iso8601(h.updated_at));
  w.field("workspace_id", h.workspace_id);
  w.field("connection_id", h.connection_id);
  if (!h.hook_url.empty()) w.field("hook_url", h.hook_url);
  w.field("object_type", h.object_type);
  w.field("interval", h.interval);
  if (h.checked_at) w.field("checked_at", format_iso8601(*h.checked_at));
  w.field("integration_type", h.integration_type);
  w.field("environment", h.environment);
  w.field("event", h.event);
  w.field("runs", h.runs);
  if (!h.fields.empty()) w.field("fields", h.fields);
  w.field("webhook_type", h.webhook_type);
  w.field("is_healthy", h.is_healthy);
  w.field("page_max_limit", h.page_max_limit);
  w.field("filters", h.filters);
  if (!h.db_type.empty()) w.field("db_type", h.db_type);
  if (!h.db_schema.empty()) w.field("db_schema", h.db_schema);
  if (!h.db_name_prefix.empty()) w.field("db_name_prefix", h.db_name_prefix);
  w.field("is_paused", h.is_paused);
  w.field("is_beta", h.is_beta);
  w.end_object();
}

std::string to_json(const webhook& h) {
  json::writer w;
  write_json(w, h);
  return w.take();
}

namespace {
// Auth keys that carry no secret: shown as given, so clients can see what is configured.
bool is_public_auth_key(std::string_view k) {
  static constexpr std::string_view keys[] = {
      "api_url", "token_url", "authorize_url", "refresh_url", "client_id", "app_id",
      "audience", "name", "user_id", "emails", "expires_in", "expiry_date",
      "refresh_token_expires_in", "refresh_token_expires_date"};
  return std::find(std::begin(keys), std::end(keys), k) != std::end(keys);
}

void write_redacted_auth(json::writer& w, std::string_view auth_json) {
  w.key("auth").begin_object();
  json::document doc;
  if (!json::document::parse(auth_json, doc) && doc.root().is_object()) {
    simdjson::dom::object members = doc.root().get_object().value_unsafe();
    for (auto [k, v] : members) {
      if (is_public_auth_key(k)) w.key(k).raw(json::to_string(v));
      else if (v.is_string()) w.field(k, "********");
    }
  }
  w.end_object();
}
}  // namespace

void write_json(json::writer& w, const connection& c) {
  w.begin_object();
  w.field("id", c.id);
  w.field("created_at", format_iso8601(c.created_at));
  w.field("updated_at", format_iso8601(c.updated_at));
  w.field("workspace_id", c.workspace_id);
  w.field("integration_type", c.integration_type);
  w.field("integration_name", c.integration_name);
  w.field("categories", c.categories);
  w.field("permissions", c.permissions);
  write_redacted_auth(w, c.auth_json);
  w.field("environment", c.environment);
  if (!c.external_xref.empty()) w.field("external_xref", c.external_xref);
  w.field("is_paused", c.is_paused);
  if (c.last_healthy_at) w.field("last_healthy_at", format_iso8601(*c.last_healthy_at));
  if (c.last_unhealthy_at) w.field("last_unhealthy_at", format_iso8601(*c.last_unhealthy_at));
  if (!c.last_unhealthy_code.empty()) w.field("last_unhealthy_code", c.last_unhealthy_code);
  w.end_object();
}

std::string to_json(const connection& c) {
  json::writer w;
  write_json(w, c);
  return w.take();
}

}  // namespace hookd
