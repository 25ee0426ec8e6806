#pragma once
// The objects of hookd's API, and their JSON encoding as the API returns them.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/json.hpp"
#include "core/time.hpp"

namespace hookd {

inline constexpr std::string_view webhook_events[] = {"created", "updated", "deleted"};
inline constexpr std::string_view webhook_types[] = {"virtual", "native"};
inline constexpr std::string_view db_types[] = {"postgres", "supabase"};

struct webhook {
  std::string id;
  std::string workspace_id;
  std::string connection_id;
  std::string hook_url;  // empty: none (database sync only)
  std::string object_type;
  double interval = 60;  // minutes
  std::optional<sys_time> checked_at;
  std::string integration_type;
  std::string environment = "Production";
  std::string event;
  std::vector<std::string> runs;
  std::string fields;  // empty: every field but raw
  std::string webhook_type = "virtual";
  bool is_healthy = true;
  int page_max_limit = 100;
  std::map<std::string, std::string> filters;
  std::string db_type;
  std::string db_url;  // a secret: never encoded into responses
  std::string db_schema;
  std::string db_name_prefix;
  bool is_paused = false;
  bool is_beta = false;
  sys_time created_at{};
  sys_time updated_at{};
};

struct connection {
  std::string id;
  std::string workspace_id;
  std::string integration_type;
  std::string integration_name;
  std::vector<std::string> categories;
  std::vector<std::string> permissions;
  std::string auth_json = "{}";  // the auth object as JSON text; secret values inside
  std::string environment = "Production";
  std::string external_xref;
  bool is_paused = false;
  sys_time created_at{};
  sys_time updated_at{};
  std::optional<sys_time> last_healthy_at;
  std::optional<sys_time> last_unhealthy_at;
  std::string last_unhealthy_code;
};

void write_json(json::writer& w, const webhook& h);
std::string to_json(const webhook& h);

// auth is redacted: keys that carry no secret (URLs, client_id, expiry dates...) are shown,
// every other string value is replaced by "********", other values are left out.
void write_json(json::writer& w, const connection& c);
std::string to_json(const connection& c);

}  // namespace hookd
