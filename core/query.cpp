#include "core/query.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace hookd {

std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec != std::errc{} || p != s.data() + i + 3) return std::nullopt;
      out.push_back(static_cast<char>(v));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<query_params> parse_query(std::string_view query) {
  query_params out;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    auto name = url_decode(pair.substr(0, eq));
    auto value = url_decode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    out.emplace(std::move(*name), std::move(*value));
  }
  return out;
}

std::variant<bool, api_error> parse_bool_param(std::string_view name, std::string_view value) {
  if (value == "true" || value == "1") return true;
  if (value == "false" || value == "0") return false;
  return api_error{400, "invalid_query", std::string(name),
                   fmt::format("{} must be true or false", name)};
}

namespace {

api_error bad_param(std::string_view name, std::string message) {
  return api_error{400, "invalid_query", std::string(name), std::move(message)};
}

std::optional<api_error> parse_int(std::string_view name, std::string_view v, int lo, int hi,
                                   int& out) {
  int n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || p != v.data() + v.size() || n < lo || n > hi)
    return bad_param(name, fmt::format("{} must be an integer from {} to {}", name, lo, hi));
  out = n;
  return std::nullopt;
}

std::optional<api_error> parse_time(std::string_view name, std::string_view v,
                                    std::optional<sys_time>& out) {
  out = parse_iso8601(v);
  if (!out) return bad_param(name, fmt::format("{} must be an ISO-8601 date-time", name));
  return std::nullopt;
}

void split_commas(std::string_view v, std::vector<std::string>& out) {
  while (!v.empty()) {
    auto comma = v.find(',');
    auto item = v.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

std::optional<api_error> apply_common(std::string_view name, std::string_view v, list_query& q,
                                      bool& known) {
  known = true;
  if (name == "limit") return parse_int(name, v, 1, 1000, q.limit);
  if (name == "offset") return parse_int(name, v, 0, 1'000'000'000, q.offset);
  if (name == "updated_gte") return parse_time(name, v, q.updated_gte);
  if (name == "created_lte") return parse_time(name, v, q.created_lte);
  if (name == "env") {
    q.env = v;
    return std::nullopt;
  }
  if (name == "sort") {
    if (v != "created_at" && v != "updated_at" && v != "name")
      return bad_param(name, "sort must be one of: created_at, updated_at, name");
    q.sort = v;
    return std::nullopt;
  }
  if (name == "order") {
    if (v != "asc" && v != "desc") return bad_param(name, "order must be one of: asc, desc");
    q.descending = v == "desc";
    return std::nullopt;
  }
  known = false;
  return std::nullopt;
}

std::optional<api_error> apply_webhook_param(std::string_view name, std::string_view v,
                                             list_query& q, bool& known) {
  known = true;
  if (name == "object") q.object_type = v;
  else if (name == "integration_type") q.integration_type = v;
  else if (name == "connection_id") q.connection_id = v;
  else if (name == "is_healthy") {
    auto b = parse_bool_param(name, v);
    if (auto* e = std::get_if<api_error>(&b)) return *e;
    q.is_healthy = std::get<bool>(b);
  } else known = false;
  return std::nullopt;
}

std::optional<api_error> apply_connection_param(std::string_view name, std::string_view v,
                                                list_query& q, bool& known) {
  known = true;
  if (name == "categories") split_commas(v, q.categories);
  else if (name == "external_xref") q.external_xref = v;
  else known = false;
  return std::nullopt;
}

}  // namespace

std::variant<list_query, api_error> parse_list_query(const query_params& params, list_kind kind) {
  list_query q;
  for (const auto& [name, value] : params) {
    bool known = false;
    if (auto e = apply_common(name, value, q, known)) return *e;
    if (known) continue;
    auto e = kind == list_kind::webhooks ? apply_webhook_param(name, value, q, known)
                                         : apply_connection_param(name, value, q, known);
    if (e) return *e;
    if (!known) {
      const char* valid = kind == list_kind::webhooks
                              ? "limit, offset, updated_gte, created_lte, sort, order, env, "
                                "object, integration_type, connection_id, is_healthy"
                              : "limit, offset, updated_gte, created_lte, sort, order, env, "
                                "categories, external_xref";
      return bad_param(name, fmt::format("unknown query parameter '{}'; valid: {}", name, valid));
    }
  }
  return q;
}

}  // namespace hookd
