#include "sources/poller.hpp"

#include "changes/canonical.hpp"

#include <ctime>
#include <set>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "core/crypto.hpp"
#include "core/json.hpp"
#include "sources/template.hpp"

namespace hookd::sources {

namespace asio = boost::asio;
using simdjson::dom::element;
template <class T>
using awaitable = asio::awaitable<T>;

// ---- helpers ----

std::string url_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xf]);
    }
  }
  return out;
}

std::string link_next(std::string_view header) {
  // <url>; rel="next", <url>; rel="last"
  std::size_t pos = 0;
  while (pos < header.size()) {
    auto lt = header.find('<', pos);
    if (lt == std::string_view::npos) break;
    auto gt = header.find('>', lt);
    if (gt == std::string_view::npos) break;
    auto url = header.substr(lt + 1, gt - lt - 1);
    auto next_entry = header.find('<', gt);
    auto params = header.substr(gt + 1, next_entry == std::string_view::npos
                                            ? std::string_view::npos
                                            : next_entry - gt - 1);
    std::string lowered(params);
    std::transform(lowered.begin(), lowered.end(), lowered.begin(), ::tolower);
    auto rel = lowered.find("rel=");
    if (rel != std::string::npos) {
      auto value = std::string_view(lowered).substr(rel + 4);
      if (!value.empty() && value.front() == '"') value.remove_prefix(1);
      // rel may hold several space-separated relation types
      auto end = value.find_first_of("\";,");
      auto types = fmt::format(" {} ", value.substr(0, end));
      if (types.find(" next ") != std::string::npos) return std::string(url);
    }
    pos = gt + 1;
  }
  return {};
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, sys_time now) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return std::chrono::seconds(999'999'999);
    return std::chrono::seconds(std::stoll(std::string(value)));
  }
  std::tm tm{};
  std::string text(value);
  if (!strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) return std::nullopt;
  auto when = std::chrono::system_clock::from_time_t(timegm(&tm));
  // Rounded up: waiting a fraction too long is fine, retrying early is not.
  auto delta = std::chrono::ceil<std::chrono::seconds>(when - now);
  return delta.count() < 0 ? std::chrono::seconds(0) : delta;
}

namespace {

std::string format_since(sys_time t, std::string_view format) {
  auto iso = format_iso8601(t);
  if (format == "iso8601_seconds") return iso.substr(0, 19) + "Z";
  if (format == "date") return iso.substr(0, 10);
  auto ms = to_unix_millis(t);
  if (format == "unix_seconds") return std::to_string(ms / 1000);
  if (format == "unix_millis") return std::to_string(ms);
  return iso;
}

bool truthy(element e) {
  if (e.is_bool()) return e.get_bool().value_unsafe();
  if (e.is_number()) return e.get_double().value_unsafe() != 0;
  if (e.is_string()) {
    std::string_view s = e.get_string().value_unsafe();
    return !s.empty() && s != "false" && s != "0";
  }
  return !e.is_null();
}

std::optional<std::string> id_string(element e) {
  if (e.is_string()) {
    std::string_view s = e.get_string().value_unsafe();
    if (s.empty()) return std::nullopt;
    return std::string(s);
  }
  if (e.is_int64() || e.is_uint64()) return json::to_string(e);
  if (e.is_double()) return json::format_number(e.get_double().value_unsafe());
  return std::nullopt;
}

// JSON text of a scalar filter comparand: strings unquoted.
std::string comparable(std::string_view json_text) {
  json::document doc;
  if (json::document::parse(json_text, doc)) return std::string(json_text);
  if (doc.root().is_string()) return std::string(doc.root().get_string().value_unsafe());
  return std::string(json_text);
}

// Sets string members of a JSON object text, keeping the others.
std::string merge_strings(std::string_view object_json,
                          const std::map<std::string, std::string>& values) {
  json::writer w;
  w.begin_object();
  json::document doc;
  if (!json::document::parse(object_json, doc) && doc.root().is_object()) {
    simdjson::dom::object members = doc.root().get_object().value_unsafe();
    for (auto [k, v] : members)
      if (!values.contains(std::string(k))) w.key(k).raw(json::to_string(v));
  }
  for (const auto& [k, v] : values) w.field(k, v);
  w.end_object();
  return w.take();
}

std::string origin_of(const net::parsed_url& u) {
  return fmt::format("{}://{}:{}", u.tls ? "https" : "http", u.host, u.port);
}

}  // namespace

// ---- budget: request rate and concurrency per connection ----

struct poller::budget {
  std::mutex mutex;
  std::chrono::steady_clock::duration interval;
  std::chrono::steady_clock::time_point next_slot{};
  int concurrency = 1;
  int in_use = 0;
};

namespace {
awaitable<void> acquire(std::shared_ptr<poller::budget>& b);
}

std::shared_ptr<poller::budget> poller::budget_for(const scan_request& req) {
  std::lock_guard lock(mutex_);
  auto& b = budgets_[req.connection_id];
  if (!b) {
    b = std::make_shared<budget>();
    b->interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(1.0 / req.definition->requests_per_second));
    b->concurrency = req.definition->concurrency;
  }
  return b;
}

// ---- scan state ----

constexpr std::size_t max_quoted_url = 200;

struct poller::scan_state {
  scan_request req;
  page_sink sink;
  json::document auth_doc;
  std::optional<element> auth;
  std::shared_ptr<poller::budget> rate;
  scan_result result;
  std::string base;               // scheme://host[:port][/prefix], no trailing slash
  net::parsed_url base_url;
  std::string access_token;       // oauth2_refresh
  bool refreshed = false;
  std::string auth_query;         // "param=value" for the query scheme
  std::string auth_query_param;
  std::vector<net::header> headers;
  // Next-page URLs the source wrote (next_url, Link), checked to stay on the scan's origin:
  // text a remote party chose, so messages, which reach the API's `runs`, quote only their start.
  std::set<std::string> source_urls;

  bool fail(std::string message) {
    if (result.error.empty()) result.error = std::move(message);
    return false;
  }
  // An unusable record: counted, the first one named, and left out of the scan.
  void skip(std::string message) {
    if (result.skipped++ == 0) result.skip_reason = std::move(message);
  }
  // The URL as it may appear in messages: without the credential of the query scheme.
  std::string redact(std::string url) const {
    if (source_urls.contains(url) && url.size() > max_quoted_url)
      url = url.substr(0, max_quoted_url) + "... (cut)";
    if (auth_query.empty()) return url;
    auto pos = url.find(auth_query);
    if (pos != std::string::npos)
      url.replace(pos, auth_query.size(), auth_query_param + "=***");
    return url;
  }
};

poller::poller(net::http_client& client, connection_events& events, const clock& clk,
               poller_options options)
    : client_(client), events_(events), clock_(clk), options_(options) {}

poller::~poller() = default;

namespace {

awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::use_awaitable);
}

awaitable<void> acquire(std::shared_ptr<poller::budget>& b) {
  std::chrono::steady_clock::time_point slot;
  for (;;) {
    {
      std::lock_guard lock(b->mutex);
      if (b->in_use < b->concurrency) {
        ++b->in_use;
        slot = std::max(std::chrono::steady_clock::now(), b->next_slot);
        b->next_slot = slot + b->interval;
        break;
      }
    }
    co_await sleep_for(std::chrono::milliseconds(5));
  }
  auto now = std::chrono::steady_clock::now();
  if (slot > now) co_await sleep_for(slot - now);
}

void release(poller::budget& b) {
  std::lock_guard lock(b.mutex);
  --b.in_use;
}

}  // namespace

awaitable<std::optional<net::client_response>> poller::send_with_retries(
    scan_state& st, const net::client_request& req) {
  int errors = 0, waits = 0;
  auto backoff = options_.backoff;
  auto next_backoff = [&] {
    auto d = backoff;
    backoff = std::min(backoff * 2, options_.max_backoff);
    return d;
  };
  for (;;) {
    co_await acquire(st.rate);
    ++st.result.requests;
    auto r = co_await client_.send(req);
    release(*st.rate);
    if (!r) {
      // Certificate, URL and address-policy failures cannot succeed on a retry.
      auto kind = r.error->kind;
      bool permanent = kind == net::client_error_kind::tls_failed ||
                       kind == net::client_error_kind::invalid_url ||
                       kind == net::client_error_kind::address_refused;
      if (!permanent && errors++ < options_.max_retries) {
        spdlog::debug("{} {}: {}; retrying", req.method, st.redact(req.url), r.error->message);
        co_await sleep_for(next_backoff());
        continue;
      }
      st.fail(fmt::format("{} {}: {} (after {} attempts)", req.method, st.redact(req.url),
                          r.error->message, errors + 1));
      co_return std::nullopt;
    }
    auto status = r.response->status;
    auto retry_after_header = r.response->header_value("retry-after");
    if (status == 429 || (status == 503 && retry_after_header)) {
      if (waits++ >= options_.max_rate_limit_waits) {
        st.fail(fmt::format("{} {}: still rate-limited (HTTP {}) after {} waits", req.method,
                            st.redact(req.url), status, waits - 1));
        co_return std::nullopt;
      }
      std::chrono::steady_clock::duration wait = next_backoff();
      if (retry_after_header)
        if (auto s = parse_retry_after(*retry_after_header, clock_.now()))
          wait = std::min<std::chrono::steady_clock::duration>(*s, options_.max_retry_after);
      spdlog::info("source rate limit: {} {} answered {}; waiting {} ms", req.method,
                   st.redact(req.url), status,
                   std::chrono::duration_cast<std::chrono::milliseconds>(wait).count());
      co_await sleep_for(wait);
      continue;
    }
    if (status >= 500 && errors++ < options_.max_retries) {
      co_await sleep_for(next_backoff());
      continue;
    }
    co_return std::move(r.response);
  }
}

awaitable<bool> poller::refresh_token(scan_state& st) {
  st.refreshed = true;
  auto token_url = st.auth ? expand_template("{auth.token_url}", st.auth) : expansion{};
  if (!token_url) token_url = expand_template(st.req.definition->auth.token_url, st.auth);
  if (!token_url) co_return st.fail("OAuth2 refresh: the connection's auth has no " + token_url.missing);
  auto refresh = expand_template("{auth.refresh_token}", st.auth);
  if (!refresh) co_return st.fail("OAuth2 refresh: the connection's auth has no refresh_token");
  std::string body = "grant_type=refresh_token&refresh_token=" + url_encode(refresh.value);
  for (auto key : {"client_id", "client_secret"}) {
    auto v = expand_template(fmt::format("{{auth.{}|}}", key), st.auth);
    if (!v.value.empty()) body += fmt::format("&{}={}", key, url_encode(v.value));
  }
  net::client_request req{"POST", token_url.value,
                          {{"content-type", "application/x-www-form-urlencoded"},
                           {"accept", "application/json"}},
                          body, std::nullopt};
  auto resp = co_await send_with_retries(st, req);
  if (!resp) co_return false;
  json::document doc;
  bool ok = resp->status / 100 == 2 && !json::document::parse(resp->body, doc) &&
            doc.root().is_object();
  std::optional<element> token = ok ? resolve_pointer(doc.root(), "/access_token") : std::nullopt;
  if (!token || !token->is_string()) {
    if (resp->status == 400 || resp->status == 401 || resp->status == 403) {
      st.result.auth_failure = resp->status == 400 ? 401u : resp->status;
      co_await events_.unhealthy(st.req.connection_id, *st.result.auth_failure);
    }
    co_return st.fail(fmt::format("OAuth2 refresh at {}: HTTP {} without an access_token",
                                  token_url.value, resp->status));
  }
  st.access_token = std::string(token->get_string().value_unsafe());
  std::map<std::string, std::string> updates{{"access_token", st.access_token}};
  if (auto r = resolve_pointer(doc.root(), "/refresh_token"); r && r->is_string())
    updates["refresh_token"] = std::string(r->get_string().value_unsafe());
  if (auto e = resolve_pointer(doc.root(), "/expires_in"); e && e->is_number())
    updates["expiry_date"] = format_iso8601(
        clock_.now() + std::chrono::seconds(static_cast<long long>(e->get_double().value_unsafe())));
  auto merged = merge_strings(st.req.auth_json, updates);
  {
    std::lock_guard lock(mutex_);
    access_tokens_[st.req.connection_id] = {crypto::sha256_hex(st.req.auth_json), crypto::sha256_hex(merged),
                                            st.access_token};
  }
  bool saved = co_await events_.auth_refreshed(st.req.connection_id, st.req.auth_json, merged);
  if (!saved)
    spdlog::info("connection {}: its auth changed during a token refresh; the new auth is kept",
                 st.req.connection_id);
  co_return true;
}

namespace {

// Headers and query credential of the definition's auth scheme.
bool prepare_auth(poller::scan_state& st);

// At most 200 bytes of a remote body, with anything but printable ASCII escaped (no log
// injection through quotes, newlines or control characters).
std::string printable_excerpt(std::string_view body) {
  std::string out;
  for (unsigned char c : body.substr(0, 200)) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') out.push_back(static_cast<char>(c));
    else out += fmt::format("\\x{:02x}", c);
  }
  return out;
}

}  // namespace

awaitable<std::optional<net::client_response>> poller::fetch(scan_state& st, std::string url) {
  for (int attempt = 0;; ++attempt) {
    net::client_request req{"GET", url, st.headers, "", std::nullopt};
    if (st.req.definition->auth.scheme == "oauth2_refresh")
      req.headers.push_back({"authorization", "Bearer " + st.access_token});
    auto resp = co_await send_with_retries(st, req);
    if (!resp) co_return std::nullopt;
    auto status = resp->status;
    if (status == 401 || status == 403) {
      if (st.req.definition->auth.scheme == "oauth2_refresh" && !st.refreshed && attempt == 0) {
        if (!co_await refresh_token(st)) co_return std::nullopt;
        continue;
      }
      st.result.auth_failure = status;
      co_await events_.unhealthy(st.req.connection_id, status);
      st.fail(fmt::format("GET {}: HTTP {}: the source refused the connection's credentials",
                          st.redact(url), status));
      co_return std::nullopt;
    }
    if (status / 100 != 2) {
      // The error reaches the API (runs) and the subscriber: the status only, never what the
      // remote party wrote. The operator may see a short, escaped excerpt at debug level.
      spdlog::debug("GET {}: HTTP {}; body begins: {}", st.redact(url), status,
                    printable_excerpt(resp->body));
      st.fail(fmt::format("GET {}: HTTP {}: the source answered with an error status",
                          st.redact(url), status));
      co_return std::nullopt;
    }
    co_return resp;
  }
}

namespace {

struct page_position {
  long long offset = 0;
  int page = 0;
  std::string cursor;
  std::string url;  // link_header / next_url
};

std::string query_string(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string q;
  for (const auto& [k, v] : params) q += fmt::format("{}{}={}", q.empty() ? "" : "&", url_encode(k), url_encode(v));
  return q;
}

std::optional<std::string> first_url(poller::scan_state& st, bool tombstones_only,
                                      const page_position& pos) {
  const auto& obj = *st.req.object;
  auto path = expand_template(obj.path, st.auth);
  if (!path) return st.fail("the connection's auth has no " + path.missing + " (needed by path)"), std::nullopt;
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto& [k, v] : obj.query) {
    auto e = expand_template(v, st.auth);
    if (!e) return st.fail("the connection's auth has no " + e.missing), std::nullopt;
    params.emplace_back(k, e.value);
  }
  for (const auto& [key, value] : st.req.filters)
    if (auto it = obj.filters.find(key); it != obj.filters.end()) params.emplace_back(it->second, value);
  if (st.req.since && obj.incremental && !tombstones_only)
    params.emplace_back(obj.incremental->param, format_since(*st.req.since, obj.incremental->format));
  if (tombstones_only)
    for (const auto& [k, v] : obj.tombstones->query) params.emplace_back(k, v);
  const auto& p = obj.pagination;
  if (p.style == "offset") {
    params.emplace_back(p.offset_param, std::to_string(pos.offset));
    params.emplace_back(p.limit_param, std::to_string(p.limit));
  } else if (p.style == "page") {
    params.emplace_back(p.page_param, std::to_string(pos.page));
    params.emplace_back(p.size_param, std::to_string(p.size));
  } else if (p.style == "cursor") {
    if (!p.limit_param.empty()) params.emplace_back(p.limit_param, std::to_string(p.limit));
    if (!pos.cursor.empty()) params.emplace_back(p.cursor_param, pos.cursor);
  } else if (p.style == "link_header" && !p.size_param.empty()) {
    params.emplace_back(p.size_param, std::to_string(p.size));
  }
  std::string q = query_string(params);
  if (!st.auth_query.empty()) q += (q.empty() ? "" : "&") + st.auth_query;
  return st.base + path.value + (q.empty() ? "" : "?" + q);
}

// A next URL from the source: absolute on the same origin, or origin-relative.
std::optional<std::string> resolve_next(poller::scan_state& st, std::string next) {
  if (next.starts_with("/")) next = origin_of(st.base_url) + next;
  auto parsed = net::parse_url(next);
  // The URL itself is not quoted: the source chose it (see scan_state::source_urls).
  if (!parsed) return st.fail("the source's next page URL is not an http(s) URL"), std::nullopt;
  if (origin_of(*parsed) != origin_of(st.base_url))
    return st.fail(fmt::format("the source's next page URL leaves {}; credentials are not "
                               "sent to another origin", origin_of(st.base_url))),
           std::nullopt;
  if (!st.auth_query.empty() && next.find(st.auth_query_param + "=") == std::string::npos)
    next += (next.find('?') == std::string::npos ? "?" : "&") + st.auth_query;
  st.source_urls.insert(next);
  return next;
}

bool more_pages(const pagination_spec& p, element body) {
  if (p.more.empty()) return true;
  auto m = resolve_pointer(body, p.more);
  return m && truthy(*m);
}

// The next page's URL, "" when the listing is done, nullopt on an error.
std::optional<std::string> next_url(poller::scan_state& st, bool tombstones_only,
                                    page_position& pos, element body,
                                    const net::client_response& resp, std::size_t count,
                                    std::optional<element> last_record) {
  const auto& p = st.req.object->pagination;
  if (p.style == "none") return std::string();
  if (!more_pages(p, body)) return std::string();
  if (p.style == "offset") {
    if (!p.next_offset.empty()) {
      auto n = resolve_pointer(body, p.next_offset);
      if (!n || !n->is_number()) return std::string();
      pos.offset = static_cast<long long>(n->get_double().value_unsafe());
    } else {
      if (count == 0 || (p.short_page_ends && count < static_cast<std::size_t>(p.limit)))
        return std::string();
      pos.offset += static_cast<long long>(count);
    }
    return first_url(st, tombstones_only, pos);
  }
  if (p.style == "page") {
    if (p.more.empty() && (count == 0 || (p.short_page_ends && count < static_cast<std::size_t>(p.size))))
      return std::string();
    ++pos.page;
    return first_url(st, tombstones_only, pos);
  }
  if (p.style == "cursor") {
    std::optional<element> c;
    if (!p.cursor.empty()) c = resolve_pointer(body, p.cursor);
    else if (last_record) c = resolve_pointer(*last_record, p.cursor_from_last);
    auto value = c ? id_string(*c) : std::nullopt;
    if (!value) return std::string();
    pos.cursor = *value;
    return first_url(st, tombstones_only, pos);
  }
  std::string next;
  if (p.style == "link_header") {
    if (auto link = resp.header_value("link")) next = link_next(*link);
  } else if (auto n = resolve_pointer(body, p.next_url); n && n->is_string()) {
    next = std::string(n->get_string().value_unsafe());
  }
  if (next.empty()) return std::string();
  return resolve_next(st, next);
}

bool passes_filters(const poller::scan_state& st, const std::map<std::string, std::string>& values) {
  for (const auto& [key, wanted] : st.req.filters) {
    if (st.req.object->filters.contains(key)) continue;  // the source applied it
    auto it = values.find(key);
    if (it == values.end() || comparable(it->second) != wanted) return false;
  }
  return true;
}

// Why a record cannot be used (no id, a NUL in its id, not an object), or nullopt.
std::optional<std::string> unusable(const poller::scan_state& st, element rec,
                                    const std::optional<std::string>& id) {
  const auto& obj = *st.req.object;
  if (!id) return fmt::format("has no id at {}", obj.id.empty() ? "/" : obj.id);
  if (id->find('\0') != std::string::npos) return std::string("has an id with a NUL character");
  if (!obj.mapping && !rec.is_object()) return std::string("is not an object");
  return std::nullopt;
}

// Appends the Unified record to `out`, unless the record is unusable (then it is skipped and
// counted: see scan_result::skipped) or filtered out.
void map_record(poller::scan_state& st, element rec, std::size_t index, int page,
                const std::string& url, std::vector<mapped_record>& out) {
  const auto& obj = *st.req.object;
  auto id_el = resolve_pointer(rec, obj.id);
  auto id = id_el ? id_string(*id_el) : std::nullopt;
  if (auto why = unusable(st, rec, id))
    return st.skip(fmt::format("GET {}: record {} on page {} {}", st.redact(url), index, page, *why));
  std::map<std::string, std::string> filter_values;
  std::string text = "{";
  json::append_quoted(text, "id");
  text.push_back(':');
  json::append_quoted(text, *id);
  auto add = [&](std::string_view name, const std::string& value) {
    text.push_back(',');
    json::append_quoted(text, name);
    text.push_back(':');
    text += value;
    if (st.req.filters.contains(std::string(name))) filter_values[std::string(name)] = value;
  };
  if (!obj.mapping) {
    simdjson::dom::object members = rec.get_object().value_unsafe();
    for (auto [k, v] : members)
      if (k != "id" && k != "raw") add(k, json::to_string(v));
  } else {
    for (const auto& [name, node] : obj.mapping->fields) {
      if (name == "id" || name == "raw") continue;
      if (auto v = render(node, rec)) add(name, *v);
    }
  }
  if (!passes_filters(st, filter_values)) return;
  text += ",\"raw\":" + json::to_string(rec) + "}";
  mapped_record m{*id, std::move(text), false, std::nullopt, {}};
  // The identity mapping's record is the source's: hash it here, not by parsing `text` again.
  if (!obj.mapping)
    m.hash = changes::identity_record_hash(*id, rec.get_object().value_unsafe(), obj.volatile_fields);
  if (obj.tombstones && !obj.tombstones->field.empty())
    if (auto t = resolve_pointer(rec, obj.tombstones->field)) m.deleted = truthy(*t);
  if (!obj.updated_at.empty())
    if (auto u = resolve_pointer(rec, obj.updated_at))
      if (auto ts = to_timestamp(*u)) m.updated_at = parse_iso8601(*ts);
  out.push_back(std::move(m));
}

bool prepare_auth(poller::scan_state& st) {
  const auto& a = st.req.definition->auth;
  for (const auto& [name, value] : st.req.definition->headers) {
    auto e = expand_template(value, st.auth);
    if (!e) return st.fail("the connection's auth has no " + e.missing + " (header " + name + ")");
    st.headers.push_back({name, e.value});
  }
  bool has_accept = std::any_of(st.req.definition->headers.begin(), st.req.definition->headers.end(),
                                [](const auto& h) {
                                  std::string n = h.first;
                                  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
                                  return n == "accept";
                                });
  if (!has_accept) st.headers.push_back({"accept", "application/json"});
  auto need = [&](const std::string& tmpl, std::string& out) {
    auto e = expand_template(tmpl, st.auth);
    if (!e) return st.fail(fmt::format("the connection's auth has no {} ({} auth)", e.missing, a.scheme));
    out = e.value;
    return true;
  };
  std::string value;
  if (a.scheme == "bearer") {
    if (!need(a.token, value)) return false;
    if (!value.empty()) st.headers.push_back({"authorization", "Bearer " + value});
  } else if (a.scheme == "header") {
    if (!need(a.value, value)) return false;
    if (!value.empty()) st.headers.push_back({a.header, value});
  } else if (a.scheme == "query") {
    if (!need(a.value, value)) return false;
    st.auth_query_param = url_encode(a.param);
    if (!value.empty()) st.auth_query = st.auth_query_param + "=" + url_encode(value);
  } else if (a.scheme == "basic") {
    std::string user, password;
    if (!need(a.username, user) || !need(a.password, password)) return false;
    st.headers.push_back({"authorization", "Basic " + crypto::base64_encode(user + ":" + password)});
  }
  return true;
}

bool prepare_base(poller::scan_state& st) {
  auto api_url = expand_template("{auth.api_url}", st.auth);
  auto base = api_url ? api_url : expand_template(st.req.definition->base_url, st.auth);
  if (!base) return st.fail("the connection's auth has no " + base.missing + " (the base URL)");
  st.base = base.value;
  while (st.base.ends_with("/")) st.base.pop_back();
  auto parsed = net::parse_url(st.base);
  if (!parsed) return st.fail(fmt::format("the base URL '{}' is not an http(s) URL", st.base));
  st.base_url = *parsed;
  return true;
}

}  // namespace

awaitable<bool> poller::listing(scan_state& st, bool tombstones_only) {
  page_position pos;
  pos.page = st.req.object->pagination.first_page;
  auto url = first_url(st, tombstones_only, pos);
  if (!url) co_return false;
  std::set<std::string> seen{*url};
  for (int page = 1;; ++page) {
    if (st.result.pages >= options_.max_pages)
      co_return st.fail(fmt::format("more than {} pages; giving up", options_.max_pages));
    auto resp = co_await fetch(st, *url);
    if (!resp) co_return false;
    json::document doc;
    if (auto err = json::document::parse(resp->body, doc))
      co_return st.fail(fmt::format("GET {}: {}", st.redact(*url), *err));
    auto records = resolve_pointer(doc.root(), st.req.object->records);
    // Some APIs answer an empty listing with null (Pipedrive's "data": null).
    bool empty_listing = !records && !st.req.object->records.empty() &&
                         !doc.root().at_pointer(st.req.object->records).error();
    if (empty_listing) {
      ++st.result.pages;
      co_return true;
    }
    if (!records || !records->is_array())
      co_return st.fail(fmt::format("GET {}: the response has no array of records at '{}'",
                                    st.redact(*url), st.req.object->records));
    std::vector<mapped_record> mapped;
    std::size_t index = 0;
    std::optional<element> last;
    simdjson::dom::array items = records->get_array().value_unsafe();
    for (element rec : items) {
      map_record(st, rec, index++, page, *url, mapped);
      last = rec;
    }
    if (tombstones_only)
      for (auto& m : mapped) m.deleted = true;
    ++st.result.pages;
    st.result.records += mapped.size();
    if (!co_await st.sink(std::move(mapped))) co_return st.fail("the scan was stopped");
    auto next = next_url(st, tombstones_only, pos, doc.root(), *resp, index, last);
    if (!next) {
      st.result.error = fmt::format("GET {}: {}", st.redact(*url), st.result.error);
      co_return false;
    }
    if (next->empty()) co_return true;
    if (!seen.insert(*next).second)
      co_return st.fail(fmt::format("GET {}: pagination loop: the next page {} was already read",
                                    st.redact(*url), st.redact(*next)));
    url = next;
  }
}

awaitable<scan_result> poller::scan(scan_request req, page_sink sink) {
  auto started = std::chrono::steady_clock::now();
  scan_state st;
  st.req = std::move(req);
  st.sink = std::move(sink);
  st.rate = budget_for(st.req);
  bool ok = true;
  if (json::document::parse(st.req.auth_json, st.auth_doc) || !st.auth_doc.root().is_object())
    ok = st.fail("the connection's auth is not a JSON object");
  else
    st.auth = st.auth_doc.root();
  ok = ok && prepare_base(st) && prepare_auth(st);
  if (ok && st.req.definition->auth.scheme == "oauth2_refresh") {
    {
      std::lock_guard lock(mutex_);
      auto fingerprint = crypto::sha256_hex(st.req.auth_json);
      if (auto it = access_tokens_.find(st.req.connection_id);
          it != access_tokens_.end() && (it->second.from == fingerprint || it->second.into == fingerprint))
        st.access_token = it->second.token;
    }
    if (st.access_token.empty()) st.access_token = expand_template("{auth.access_token|}", st.auth).value;
    if (st.access_token.empty()) ok = co_await refresh_token(st);
  }
  st.result.incremental = ok && st.req.since && st.req.object->incremental;
  if (ok) ok = co_await listing(st, false);
  if (ok && st.req.object->tombstones && !st.req.object->tombstones->query.empty())
    ok = co_await listing(st, true);
  st.result.complete = ok;
  if (ok) co_await events_.healthy(st.req.connection_id);
  st.result.duration = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  co_return st.result;
}

}  // namespace hookd::sources
