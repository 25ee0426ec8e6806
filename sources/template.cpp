#include "sources/template.hpp"

#include "core/json.hpp"

namespace hookd::sources {
namespace {

// "auth.meta.owner" -> the string (or number) at auth/meta/owner.
std::optional<std::string> lookup(std::string_view ref, std::optional<simdjson::dom::element> auth) {
  if (!ref.starts_with("auth.") || !auth) return std::nullopt;
  ref.remove_prefix(5);
  simdjson::dom::element cur = *auth;
  while (!ref.empty()) {
    auto dot = ref.find('.');
    auto key = ref.substr(0, dot);
    if (!cur.is_object()) return std::nullopt;
    auto next = cur.get_object().value_unsafe().at_key(key);
    if (next.error()) return std::nullopt;
    cur = next.value_unsafe();
    ref = dot == std::string_view::npos ? std::string_view{} : ref.substr(dot + 1);
  }
  if (cur.is_string()) {
    std::string_view s = cur.get_string().value_unsafe();
    if (s.empty()) return std::nullopt;
    return std::string(s);
  }
  if (cur.is_number()) return json::to_string(cur);
  return std::nullopt;
}

}  // namespace

expansion expand_template(std::string_view text, std::optional<simdjson::dom::element> auth) {
  expansion out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto open = text.find('{', pos);
    if (open == std::string_view::npos) {
      out.value += text.substr(pos);
      break;
    }
    auto close = text.find('}', open);
    if (close == std::string_view::npos) {
      out.value += text.substr(pos);
      break;
    }
    out.value += text.substr(pos, open - pos);
    auto body = text.substr(open + 1, close - open - 1);
    std::optional<std::string> value;
    bool optional = false;
    std::string_view first = body.substr(0, body.find('|'));
    for (;;) {
      auto bar = body.find('|');
      auto alt = body.substr(0, bar);
      if (alt.empty()) optional = true;
      else if ((value = lookup(alt, auth))) break;
      if (bar == std::string_view::npos) break;
      body.remove_prefix(bar + 1);
    }
    if (value) out.value += *value;
    else if (!optional && out.missing.empty()) out.missing = std::string(first);
    pos = close + 1;
  }
  return out;
}

}  // namespace hookd::sources
