#include "sources/mapping.hpp"

#include <charconv>
#include <cmath>

#include "core/json.hpp"
#include "core/time.hpp"

namespace hookd::sources {

using simdjson::dom::element;

std::optional<element> resolve_pointer(element e, std::string_view pointer) {
  if (pointer.empty() || pointer == "@") return e.is_null() ? std::nullopt : std::optional(e);
  auto r = e.at_pointer(pointer);
  if (r.error()) return std::nullopt;
  element v = r.value_unsafe();
  if (v.is_null()) return std::nullopt;
  return v;
}

namespace {

std::optional<std::string> json_string(std::string_view s) {
  std::string out;
  json::append_quoted(out, s);
  return out;
}

std::optional<std::int64_t> integer_of(element e) {
  if (e.is_int64()) return e.get_int64().value_unsafe();
  if (e.is_uint64()) return static_cast<std::int64_t>(e.get_uint64().value_unsafe());
  if (e.is_double()) return static_cast<std::int64_t>(e.get_double().value_unsafe());
  if (e.is_string()) {
    std::string_view s = e.get_string().value_unsafe();
    std::int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc{} && p == s.data() + s.size() && !s.empty()) return v;
  }
  return std::nullopt;
}

std::optional<std::string> as_string(element e) {
  if (e.is_string()) return std::string(e.get_string().value_unsafe());
  if (e.is_bool()) return e.get_bool().value_unsafe() ? "true" : "false";
  if (e.is_int64() || e.is_uint64()) return json::to_string(e);
  if (e.is_double()) return json::format_number(e.get_double().value_unsafe());
  return std::nullopt;
}

std::optional<std::string> convert(element e, std::string_view as) {
  if (as == "timestamp") {
    auto t = to_timestamp(e);
    return t ? json_string(*t) : std::nullopt;
  }
  if (as == "string") {
    auto s = as_string(e);
    return s ? json_string(*s) : std::nullopt;
  }
  if (as == "number") {
    if (e.is_number()) return json::to_string(e);
    if (e.is_string()) {
      std::string s(e.get_string().value_unsafe());
      char* end = nullptr;
      double d = std::strtod(s.c_str(), &end);
      if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d)) return json::format_number(d);
    }
    return std::nullopt;
  }
  if (as == "boolean") {
    if (e.is_bool()) return json::to_string(e);
    if (e.is_string()) {
      std::string_view s = e.get_string().value_unsafe();
      if (s == "true" || s == "1") return "true";
      if (s == "false" || s == "0") return "false";
    }
    if (e.is_number()) return integer_of(e).value_or(0) != 0 ? "true" : "false";
    return std::nullopt;
  }
  return std::nullopt;
}

std::optional<std::string> render_join(const mapping_node& node, element source) {
  std::string out;
  bool any = false;
  for (const auto& part : node.items) {
    std::optional<std::string> piece;
    if (part.type == mapping_node::kind::literal) {
      piece = part.text;
    } else if (part.type == mapping_node::kind::pointer) {
      if (auto v = resolve_pointer(source, part.text)) piece = as_string(*v);
    }
    if (!piece || piece->empty()) continue;
    if (any) out += node.sep;
    out += *piece;
    any = true;
  }
  return any ? json_string(out) : std::nullopt;
}

std::optional<std::string> render_each(const mapping_node& node, element source) {
  auto arr = resolve_pointer(source, node.text);
  if (!arr || !arr->is_array()) return std::nullopt;
  std::string out = "[";
  bool any = false;
  simdjson::dom::array items = arr->get_array().value_unsafe();
  for (element item : items) {
    auto v = render(node.items.front(), item);
    if (!v) continue;
    if (any) out.push_back(',');
    out += *v;
    any = true;
  }
  out.push_back(']');
  return any ? std::optional(out) : std::nullopt;
}

std::optional<std::string> render_object(const mapping_node& node, element source) {
  std::string out = "{";
  bool any = false, any_from_source = false;
  for (const auto& [name, child] : node.fields) {
    auto v = render(child, source);
    if (!v) continue;
    if (any) out.push_back(',');
    json::append_quoted(out, name);
    out.push_back(':');
    out += *v;
    any = true;
    any_from_source |= child.type != mapping_node::kind::literal;
  }
  out.push_back('}');
  // An object of literals only ({type: "=WORK"} without its email) says nothing: left out.
  return any_from_source ? std::optional(out) : std::nullopt;
}

std::optional<std::string> render_array(const mapping_node& node, element source) {
  std::string out = "[";
  bool any = false;
  for (const auto& child : node.items) {
    auto v = render(child, source);
    if (!v) continue;
    if (any) out.push_back(',');
    out += *v;
    any = true;
  }
  out.push_back(']');
  return any ? std::optional(out) : std::nullopt;
}

}  // namespace

std::optional<std::string> to_timestamp(element e) {
  if (e.is_string()) {
    std::string_view s = e.get_string().value_unsafe();
    if (auto t = parse_iso8601(s)) return format_iso8601(*t);
  }
  auto n = integer_of(e);
  if (!n) return std::nullopt;
  // Below 1e11 a value is in seconds (that is until the year 5138), else milliseconds.
  auto ms = std::llabs(*n) < 100'000'000'000LL ? *n * 1000 : *n;
  return format_iso8601(from_unix_millis(ms));
}

std::optional<std::string> render(const mapping_node& node, element source) {
  switch (node.type) {
    case mapping_node::kind::literal: return json_string(node.text);
    case mapping_node::kind::pointer: {
      auto v = resolve_pointer(source, node.text);
      return v ? std::optional(json::to_string(*v)) : std::nullopt;
    }
    case mapping_node::kind::convert: {
      auto v = resolve_pointer(source, node.text);
      return v ? convert(*v, node.as) : std::nullopt;
    }
    case mapping_node::kind::join: return render_join(node, source);
    case mapping_node::kind::each: return render_each(node, source);
    case mapping_node::kind::object: return render_object(node, source);
    case mapping_node::kind::array: return render_array(node, source);
  }
  return std::nullopt;
}

}  // namespace hookd::sources
