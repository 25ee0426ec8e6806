#include "daemon/api.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/address_check.hpp"
#include "net/http_client.hpp"
#include "sources/template.hpp"

#include "core/json.hpp"
#include "core/json_input.hpp"
#include "core/query.hpp"

namespace hookd {

namespace http = net::http;
template <class T>
using awaitable = boost::asio::awaitable<T>;

struct api::context {
  net::request req;
  std::string path;
  std::string query;
  std::vector<std::string> segments;
  storage::workspace ws;
  json::document body;
};

namespace {

net::response json_response(unsigned status, std::string body) {
  net::response res{static_cast<http::status>(status), 11};
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

net::response error_response(const api_error& e) { return json_response(e.status, e.to_json()); }

net::response empty_ok() { return net::response{http::status::ok, 11}; }

api_error not_found(std::string_view what, std::string_view id) {
  return {404, "not_found", "", fmt::format("{} '{}' not found", what, id)};
}

api_error method_not_allowed(const net::request& req, std::string_view allowed) {
  return {405, "method_not_allowed", "",
          fmt::format("{} is not allowed here; allowed: {}", std::string_view(req.method_string()),
                      allowed)};
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    auto slash = path.find('/');
    out.emplace_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return out;
}

// The API key from "authorization: <key>" or "authorization: Bearer <key>" (any case).
std::string api_key_of(const net::request& req) {
  auto it = req.find(http::field::authorization);
  if (it == req.end()) return {};
  std::string_view v(it->value().data(), it->value().size());
  auto trim = [](std::string_view x) {
    while (!x.empty() && x.front() == ' ') x.remove_prefix(1);
    while (!x.empty() && x.back() == ' ') x.remove_suffix(1);
    return x;
  };
  v = trim(v);
  if (v.size() > 7) {
    std::string scheme(v.substr(0, 7));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(), ::tolower);
    if (scheme == "bearer ") v = trim(v.substr(7));
  }
  return std::string(v);
}

bool is_json_content_type(const net::request& req) {
  auto it = req.find(http::field::content_type);
  if (it == req.end()) return false;
  std::string v(it->value());
  std::transform(v.begin(), v.end(), v.begin(), ::tolower);
  auto semi = v.find(';');
  auto type = v.substr(0, semi);
  while (!type.empty() && type.back() == ' ') type.pop_back();
  return type == "application/json";
}

// Parses the request body as a JSON object (415, 400 otherwise). Bodies come from anyone
// holding a key: they are held to json::parse_input's limits (depth, numbers, duplicate keys,
// NUL, UTF-8), and the 400 names the member at fault where it can.
std::optional<api_error> parse_body(const net::request& req, json::document& doc) {
  if (!is_json_content_type(req))
    return api_error{415, "unsupported_media_type", "",
                     "the request body must be JSON (content-type: application/json)"};
  if (auto problem = json::parse_input(req.body(), doc))
    return api_error{400, "invalid_json", problem->field, problem->message};
  if (!doc.root().is_object())
    return api_error{400, "invalid_body", "", "the request body must be a JSON object"};
  return std::nullopt;
}

template <class T>
std::string json_array_of(const std::vector<T>& items) {
  json::writer w;
  w.begin_array();
  for (const auto& item : items) write_json(w, item);
  w.end_array();
  return w.take();
}

std::variant<bool, api_error> include_all_param(const std::string& query) {
  auto params = parse_query(query);
  if (!params) return api_error{400, "invalid_query", "", "malformed query string"};
  bool include_all = false;
  for (const auto& [name, value] : *params) {
    if (name != "include_all")
      return api_error{400, "invalid_query", name,
                       fmt::format("unknown query parameter '{}'; valid: include_all", name)};
    auto b = parse_bool_param(name, value);
    if (auto* e = std::get_if<api_error>(&b)) return *e;
    include_all = std::get<bool>(b);
  }
  return include_all;
}

std::variant<list_query, api_error> list_params(const std::string& query, list_kind kind) {
  auto params = parse_query(query);
  if (!params) return api_error{400, "invalid_query", "", "malformed query string"};
  return parse_list_query(*params, kind);
}

}  // namespace

api::api(storage::store& store, const sources::integration_registry& integrations,
         api_options options)
    : store_(store), integrations_(integrations), options_(options) {}

awaitable<net::response> api::handle(net::request req) {
  context ctx;
  std::string_view target(req.target().data(), req.target().size());
  auto q = target.find('?');
  ctx.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) ctx.query = std::string(target.substr(q + 1));
  ctx.segments = split_path(ctx.path);
  ctx.req = std::move(req);
  try {
    co_return co_await route(ctx);
  } catch (const storage::database_unavailable& e) {
    spdlog::warn("database unavailable: {}", e.what());
    co_return error_response({503, "database_unavailable", "", "the database is unavailable"});
  } catch (const std::exception& e) {
    spdlog::error("{} {} failed: {}", std::string_view(ctx.req.method_string()), ctx.path,
                  e.what());
    co_return error_response({500, "internal_error", "", "internal error"});
  }
}

awaitable<net::response> api::route(context& ctx) {
  const auto& s = ctx.segments;
  const auto method = ctx.req.method();
  if (s.size() == 1 && (s[0] == "healthz" || s[0] == "readyz")) {
    if (method != http::verb::get) co_return error_response(method_not_allowed(ctx.req, "GET"));
    if (s[0] == "healthz") co_return json_response(200, R"({"status":"ok"})");
    co_return co_await readyz();
  }
  bool workspace_path = s.size() == 2 && s[0] == "hookd" && s[1] == "workspace";
  bool known = workspace_path ||
               (s.size() >= 2 && s[0] == "unified" &&
                ((s[1] == "webhook" && s.size() <= 4 && (s.size() < 4 || s[3] == "trigger")) ||
                 (s[1] == "connection" && s.size() <= 3) ||
                 (s[1] == "integration" && s.size() == 2)));
  if (!known) co_return error_response({404, "not_found", "", "no such endpoint: " + ctx.path});

  auto key = api_key_of(ctx.req);
  std::optional<storage::workspace> ws;
  if (!key.empty()) ws = co_await store_.find_workspace_by_key(key);
  if (!ws)
    co_return error_response({401, "unauthorized", "",
                              key.empty() ? "missing API key (authorization header)"
                                          : "invalid API key"});
  ctx.ws = std::move(*ws);

  if (workspace_path) co_return co_await workspace_settings(ctx);
  if (s[1] == "integration") {
    if (method != http::verb::get) co_return error_response(method_not_allowed(ctx.req, "GET"));
    co_return integrations(ctx);
  }
  if (s[1] == "webhook") {
    if (s.size() == 2) co_return co_await webhooks(ctx);
    if (s.size() == 3) co_return co_await webhook_item(ctx, s[2]);
    co_return co_await trigger(ctx, s[2]);
  }
  if (s.size() == 2) co_return co_await connections(ctx);
  co_return co_await connection_item(ctx, s[2]);
}

awaitable<net::response> api::readyz() {
  bool ready = false;
  try {
    ready = co_await store_.ready();
  } catch (const std::exception& e) {
    spdlog::warn("readiness check failed: {}", e.what());
  }
  if (ready) co_return json_response(200, R"({"status":"ready"})");
  co_return json_response(503, R"({"status":"not_ready"})");
}

net::response api::integrations(context& ctx) const {
  if (!ctx.query.empty()) {
    auto params = parse_query(ctx.query);
    for (const auto& [name, _] : params.value_or(query_params{}))
      if (name != "limit" && name != "offset" && name != "categories" && name != "summary")
        return error_response({400, "invalid_query", name,
                               fmt::format("unknown query parameter '{}'", name)});
  }
  json::writer w;
  w.begin_array();
  for (const auto& [type, i] : integrations_.all()) {
    w.begin_object().field("type", i.type).field("name", i.name).field("categories", i.categories);
    // Per object type, the webhook features the definition supports.
    w.key("objects").begin_object();
    for (const auto& [object_type, o] : i.objects) {
      std::vector<std::string> filters;
      for (const auto& [key, _] : o.filters) filters.push_back(key);
      w.key(object_type).begin_object();
      w.field("incremental", o.incremental.has_value());
      w.field("tombstones", o.tombstones.has_value());
      w.field("deletes", true);  // from tombstones, or from complete scans
      w.field("filters", filters);
      w.field("native", false);
      w.end_object();
    }
    w.end_object().end_object();
  }
  w.end_array();
  return json_response(200, w.take());
}

// ---- workspace settings (a hookd extension) ----

awaitable<net::response> api::workspace_settings(context& ctx) {
  auto method = ctx.req.method();
  if (method == http::verb::patch || method == http::verb::put) {
    if (auto e = parse_body(ctx.req, ctx.body)) co_return error_response(*e);
    simdjson::dom::object members = ctx.body.root().get_object().value_unsafe();
    std::optional<std::string> url;
    for (auto [k, v] : members) {
      if (k != "notification_url")
        co_return error_response({400, "unknown_field", std::string(k),
                                  fmt::format("unknown field '{}'; writable: notification_url", std::string_view(k))});
      if (v.is_null()) url = "";
      else if (!v.is_string())
        co_return error_response(invalid_field("notification_url", "notification_url must be a string"));
      else url = std::string(v.get_string().value_unsafe());
    }
    if (url && !url->empty()) {
      if (auto why = check_http_url(*url))
        co_return error_response(invalid_field("notification_url", "notification_url " + *why));
      webhook probe;
      probe.hook_url = *url;
      if (auto e = co_await check_destination(probe)) {
        e->field = "notification_url";
        co_return error_response(*e);
      }
    }
    if (url) {
      co_await store_.set_notification_url(ctx.ws.id, *url);
      ctx.ws.notification_url = *url;
    }
  } else if (method != http::verb::get) {
    co_return error_response(method_not_allowed(ctx.req, "GET, PATCH, PUT"));
  }
  json::writer w;
  w.begin_object().field("id", ctx.ws.id).field("name", ctx.ws.name);
  w.field("notification_url", ctx.ws.notification_url).end_object();
  co_return json_response(200, w.take());
}

// ---- webhooks ----

awaitable<std::optional<api_error>> api::check_webhook_target(
    context& ctx, const webhook& h, std::map<std::string, std::string>& pushed) {
  auto conn = co_await store_.get_connection(ctx.ws.id, h.connection_id);
  if (!conn)
    co_return invalid_field("connection_id",
                            fmt::format("connection_id '{}' is not a connection of this workspace",
                                        h.connection_id));
  const auto* integration = integrations_.find(conn->integration_type);
  if (!integration)
    co_return invalid_field("connection_id",
                            fmt::format("the connection's integration '{}' is not loaded",
                                        conn->integration_type));
  if (!integration->supports(h.object_type)) {
    std::string supported;
    for (const auto& [t, _] : integration->objects) supported += (supported.empty() ? "" : ", ") + t;
    co_return invalid_field("object_type",
                            fmt::format("integration '{}' does not support object_type '{}'; "
                                        "supported: {}",
                                        integration->type, h.object_type, supported));
  }
  // Filters the source can apply itself are pushed down (and select the feed).
  const auto* object = integration->object(h.object_type);
  for (const auto& [key, value] : h.filters)
    if (object->filters.contains(key)) pushed.emplace(key, value);
  co_return std::nullopt;
}

// The SSRF guard at create/update (it runs again at every connect: DNS may change).
awaitable<std::optional<api_error>> api::check_destination(const webhook& h) {
  if (h.hook_url.empty()) co_return std::nullopt;
  if (auto bad = net::url_problem(h.hook_url))
    co_return invalid_field("hook_url", "hook_url is not a valid URL: " + *bad);
  auto why = co_await net::url_refusal(options_.destinations, h.hook_url);
  if (!why) co_return std::nullopt;
  co_return invalid_field("hook_url", fmt::format("hook_url {}; hookd does not deliver there "
                                                  "unless allow_private_destinations allows it",
                                                  *why));
}

awaitable<net::response> api::save_webhook(context& ctx, webhook h, bool is_new,
                                           bool include_all) {
  if (auto e = validate_webhook(h, options_.limits)) co_return error_response(*e);
  if (auto e = co_await check_destination(h)) co_return error_response(*e);
  std::map<std::string, std::string> pushed;
  if (auto e = co_await check_webhook_target(ctx, h, pushed)) co_return error_response(*e);
  // Two statements, not a conditional expression: g++ 12 miscompiles co_await inside ?:.
  std::optional<webhook> saved;
  if (is_new) saved = co_await store_.create_webhook(h, include_all, pushed);
  else saved = co_await store_.update_webhook(h, pushed);
  if (saved && !is_new && on_changed_) on_changed_(saved->id);
  if (!saved) {
    // The connection disappeared between the check and the write (or the webhook did).
    if (!is_new && !(co_await store_.get_webhook(ctx.ws.id, h.id)))
      co_return error_response(not_found("webhook", h.id));
    co_return error_response(invalid_field(
        "connection_id",
        fmt::format("connection_id '{}' is not a connection of this workspace", h.connection_id)));
  }
  co_return json_response(200, to_json(*saved));
}

awaitable<net::response> api::webhooks(context& ctx) {
  auto method = ctx.req.method();
  if (method == http::verb::get) {
    auto q = list_params(ctx.query, list_kind::webhooks);
    if (auto* e = std::get_if<api_error>(&q)) co_return error_response(*e);
    auto items = co_await store_.list_webhooks(ctx.ws.id, std::get<list_query>(q));
    co_return json_response(200, json_array_of(items));
  }
  if (method != http::verb::post) co_return error_response(method_not_allowed(ctx.req, "GET, POST"));
  auto include_all = include_all_param(ctx.query);
  if (auto* e = std::get_if<api_error>(&include_all)) co_return error_response(*e);
  if (auto e = parse_body(ctx.req, ctx.body)) co_return error_response(*e);
  webhook h;
  h.interval = options_.default_interval_minutes;
  if (auto e = apply_webhook_body(ctx.body.root(), h)) co_return error_response(*e);
  h.workspace_id = ctx.ws.id;
  co_return co_await save_webhook(ctx, std::move(h), true, std::get<bool>(include_all));
}

awaitable<net::response> api::webhook_item(context& ctx, const std::string& id) {
  auto method = ctx.req.method();
  bool known_method = method == http::verb::get || method == http::verb::put ||
                      method == http::verb::patch || method == http::verb::delete_;
  if (!known_method)
    co_return error_response(method_not_allowed(ctx.req, "GET, PUT, PATCH, DELETE"));
  if (method == http::verb::delete_) {
    if (!co_await store_.delete_webhook(ctx.ws.id, id))
      co_return error_response(not_found("webhook", id));
    if (on_changed_) on_changed_(id);
    co_return empty_ok();
  }
  auto existing = co_await store_.get_webhook(ctx.ws.id, id);
  if (!existing) co_return error_response(not_found("webhook", id));
  if (method == http::verb::get) co_return json_response(200, to_json(*existing));
  if (auto e = parse_body(ctx.req, ctx.body)) co_return error_response(*e);
  webhook h = *existing;
  if (method == http::verb::put) {
    // PUT replaces every writable field: start from the defaults, keep identity.
    h = webhook{};
    h.interval = options_.default_interval_minutes;
    h.id = existing->id;
    h.workspace_id = existing->workspace_id;
    h.created_at = existing->created_at;
  }
  if (auto e = apply_webhook_body(ctx.body.root(), h)) co_return error_response(*e);
  co_return co_await save_webhook(ctx, std::move(h), false, false);
}

awaitable<net::response> api::trigger(context& ctx, const std::string& id) {
  auto method = ctx.req.method();
  if (method != http::verb::put && method != http::verb::patch)
    co_return error_response(method_not_allowed(ctx.req, "PUT, PATCH"));
  if (!co_await store_.trigger_webhook(ctx.ws.id, id))
    co_return error_response(not_found("webhook", id));
  if (on_trigger_) on_trigger_();
  co_return empty_ok();
}

// ---- connections ----

std::optional<api_error> api::resolve_integration(connection& c) const {
  if (auto e = validate_connection(c)) return e;
  const auto* integration = integrations_.find(c.integration_type);
  if (!integration)
    return invalid_field("integration_type",
                         fmt::format("integration_type '{}' is not known; known: {}",
                                     c.integration_type, integrations_.type_list()));
  if (c.integration_name.empty()) c.integration_name = integration->name;
  if (c.categories.empty()) c.categories = integration->categories;
  return std::nullopt;
}

namespace {

struct source_url {
  std::string field;  // as the 400 names it
  std::string url;
};

// The URLs a poll of this connection would connect to that its auth decides, as the poller
// reads them: auth.api_url (else a definition base URL with auth in it) and auth.token_url.
// Fixed definition URLs are the operator's and are checked at connect only.
std::vector<source_url> source_urls(const connection& c, const sources::integration& def) {
  std::vector<source_url> out;
  json::document doc;
  std::optional<simdjson::dom::element> auth;
  if (!json::document::parse(c.auth_json, doc) && doc.root().is_object()) auth = doc.root();
  if (auto api_url = sources::expand_template("{auth.api_url}", auth))
    out.push_back({"auth.api_url", api_url.value});
  else if (def.base_url.find('{') != std::string::npos)
    if (auto base = sources::expand_template(def.base_url, auth)) out.push_back({"auth", base.value});
  if (auto token_url = sources::expand_template("{auth.token_url}", auth))
    out.push_back({"auth.token_url", token_url.value});
  return out;
}

}  // namespace

// The SSRF guard for sources at create/update; the source client checks every connect too.
awaitable<std::optional<api_error>> api::check_source(const connection& c) {
  const auto* def = integrations_.find(c.integration_type);
  if (!def) co_return std::nullopt;  // resolve_integration refused it already
  auto urls = source_urls(c, *def);
  for (const auto& u : urls) {
    auto subject = u.field == "auth" ? fmt::format("the base URL {} (from auth)", def->base_url) : u.field;
    if (auto bad = net::url_problem(u.url))
      co_return invalid_field(u.field, fmt::format("{} is not a valid URL: {}", subject, *bad));
    auto why = co_await net::url_refusal(options_.sources, u.url);
    if (!why) continue;
    co_return invalid_field(u.field, fmt::format("{} {}; hookd does not poll there unless "
                                                 "allow_private_sources allows it",
                                                 subject, *why));
  }
  co_return std::nullopt;
}

awaitable<net::response> api::connections(context& ctx) {
  auto method = ctx.req.method();
  if (method == http::verb::get) {
    auto q = list_params(ctx.query, list_kind::connections);
    if (auto* e = std::get_if<api_error>(&q)) co_return error_response(*e);
    auto items = co_await store_.list_connections(ctx.ws.id, std::get<list_query>(q));
    co_return json_response(200, json_array_of(items));
  }
  if (method != http::verb::post) co_return error_response(method_not_allowed(ctx.req, "GET, POST"));
  if (!ctx.query.empty())
    co_return error_response({400, "invalid_query", "", "this endpoint takes no query parameters"});
  if (auto e = parse_body(ctx.req, ctx.body)) co_return error_response(*e);
  connection c;
  if (auto e = apply_connection_body(ctx.body.root(), c)) co_return error_response(*e);
  if (auto e = resolve_integration(c)) co_return error_response(*e);
  if (auto e = co_await check_source(c)) co_return error_response(*e);
  c.workspace_id = ctx.ws.id;
  auto saved = co_await store_.create_connection(std::move(c));
  co_return json_response(200, to_json(saved));
}

awaitable<net::response> api::connection_item(context& ctx, const std::string& id) {
  auto method = ctx.req.method();
  bool known_method = method == http::verb::get || method == http::verb::put ||
                      method == http::verb::patch || method == http::verb::delete_;
  if (!known_method)
    co_return error_response(method_not_allowed(ctx.req, "GET, PUT, PATCH, DELETE"));
  if (method == http::verb::delete_) {
    if (!co_await store_.delete_connection(ctx.ws.id, id))
      co_return error_response(not_found("connection", id));
    co_return empty_ok();
  }
  auto existing = co_await store_.get_connection(ctx.ws.id, id);
  if (!existing) co_return error_response(not_found("connection", id));
  if (method == http::verb::get) co_return json_response(200, to_json(*existing));
  if (auto e = parse_body(ctx.req, ctx.body)) co_return error_response(*e);
  connection c = *existing;
  if (method == http::verb::put) {
    c = connection{};
    c.id = existing->id;
    c.workspace_id = existing->workspace_id;
    c.created_at = existing->created_at;
    c.last_healthy_at = existing->last_healthy_at;
    c.last_unhealthy_at = existing->last_unhealthy_at;
    c.last_unhealthy_code = existing->last_unhealthy_code;
  }
  if (auto e = apply_connection_body(ctx.body.root(), c)) co_return error_response(*e);
  if (auto e = resolve_integration(c)) co_return error_response(*e);
  if (auto e = co_await check_source(c)) co_return error_response(*e);
  auto saved = co_await store_.update_connection(std::move(c));
  if (!saved) co_return error_response(not_found("connection", id));
  co_return json_response(200, to_json(*saved));
}

}  // namespace hookd
