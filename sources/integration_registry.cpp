#include "sources/integration_registry.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "core/object_types.hpp"
#include "core/validation.hpp"

namespace hookd::sources {
namespace {

// Reads one YAML mapping, naming "<file>: key '<path>'" in every error.
class reader {
public:
  reader(const YAML::Node& node, std::string file, std::string path)
      : node_(node), file_(std::move(file)), path_(std::move(path)) {}

  [[noreturn]] void fail(std::string_view key, std::string_view what) const {
    throw definition_error(fmt::format("integration definition {}: key '{}': {}", file_,
                                       qualified(key), what));
  }
  std::string qualified(std::string_view key) const {
    return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
  }

  void allow_only(std::initializer_list<std::string_view> keys) const {
    for (const auto& kv : node_) {
      auto k = kv.first.as<std::string>();
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        std::string valid;
        for (auto a : keys) valid += fmt::format("{}{}", valid.empty() ? "" : ", ", a);
        fail(k, "unknown key; valid keys here: " + valid);
      }
    }
  }

  bool has(std::string_view key) const { return static_cast<bool>(node_[std::string(key)]); }

  std::string string(std::string_view key, std::optional<std::string> fallback = std::nullopt) const {
    auto n = node_[std::string(key)];
    if (!n) {
      if (fallback) return *fallback;
      fail(key, "is required");
    }
    if (!n.IsScalar()) fail(key, "must be a string");
    return n.as<std::string>();
  }

  std::string one_of(std::string_view key, std::initializer_list<std::string_view> values,
                     std::string fallback) const {
    auto v = string(key, fallback);
    if (std::find(values.begin(), values.end(), v) == values.end()) {
      std::vector<std::string_view> list(values);
      fail(key, "must be one of: " + join_values(list));
    }
    return v;
  }

  std::string pointer(std::string_view key, std::string fallback = "") const {
    auto v = string(key, fallback);
    if (!v.empty() && v.front() != '/') fail(key, "must be a JSON pointer starting with /");
    return v;
  }

  double number(std::string_view key, double fallback, double lo, double hi) const {
    auto n = node_[std::string(key)];
    if (!n) return fallback;
    double v = 0;
    try {
      v = n.as<double>();
    } catch (const YAML::Exception&) {
      fail(key, "must be a number");
    }
    if (v < lo || v > hi) fail(key, fmt::format("must be between {} and {}", lo, hi));
    return v;
  }

  int integer(std::string_view key, int fallback, int lo, int hi) const {
    auto n = node_[std::string(key)];
    if (!n) return fallback;
    int v = 0;
    try {
      v = n.as<int>();
    } catch (const YAML::Exception&) {
      fail(key, "must be an integer");
    }
    if (v < lo || v > hi) fail(key, fmt::format("must be between {} and {}", lo, hi));
    return v;
  }

  bool boolean(std::string_view key, bool fallback) const {
    auto v = one_of(key, {"true", "false"}, fallback ? "true" : "false");
    return v == "true";
  }

  std::map<std::string, std::string> string_map(std::string_view key) const {
    std::map<std::string, std::string> out;
    auto n = node_[std::string(key)];
    if (!n) return out;
    if (!n.IsMap()) fail(key, "must be a mapping of strings");
    for (const auto& kv : n) {
      if (!kv.second.IsScalar()) fail(fmt::format("{}.{}", key, kv.first.as<std::string>()), "must be a string");
      out.emplace(kv.first.as<std::string>(), kv.second.as<std::string>());
    }
    return out;
  }

  std::vector<std::string> string_list(std::string_view key, bool required) const {
    std::vector<std::string> out;
    auto n = node_[std::string(key)];
    if (!n) {
      if (required) fail(key, "is required");
      return out;
    }
    if (!n.IsSequence() || (required && n.size() == 0)) fail(key, "must be a non-empty list of strings");
    for (const auto& item : n) {
      if (!item.IsScalar()) fail(key, "must be a list of strings");
      out.push_back(item.as<std::string>());
    }
    return out;
  }

  std::optional<reader> child(std::string_view key) const {
    auto n = node_[std::string(key)];
    if (!n) return std::nullopt;
    if (!n.IsMap()) fail(key, "must be a mapping");
    return reader(n, file_, qualified(key));
  }

  const YAML::Node& node() const { return node_; }
  const std::string& file() const { return file_; }

private:
  YAML::Node node_;
  std::string file_;
  std::string path_;
};

mapping_node parse_mapping(const YAML::Node& n, const reader& at, const std::string& key);

mapping_node parse_scalar_mapping(const std::string& text, const reader& at, const std::string& key) {
  mapping_node m;
  if (text.starts_with("/") || text == "@") {
    m.type = mapping_node::kind::pointer;
    m.text = text;
  } else if (text.starts_with("=")) {
    m.type = mapping_node::kind::literal;
    m.text = text.substr(1);
  } else {
    at.fail(key, "a mapped value must be a /pointer, =literal, or a mapping");
  }
  return m;
}

mapping_node parse_mapping_form(const YAML::Node& n, const reader& at, const std::string& key) {
  mapping_node m;
  if (n["from"]) {
    reader r(n, at.file(), at.qualified(key));
    r.allow_only({"from", "as"});
    m.type = mapping_node::kind::convert;
    m.text = r.pointer("from");
    m.as = r.one_of("as", {"string", "number", "boolean", "timestamp"}, "string");
  } else if (n["join"]) {
    reader r(n, at.file(), at.qualified(key));
    r.allow_only({"join", "sep"});
    m.type = mapping_node::kind::join;
    m.sep = r.string("sep", " ");
    if (!n["join"].IsSequence()) r.fail("join", "must be a list of /pointers and =literals");
    for (const auto& part : n["join"]) {
      if (!part.IsScalar()) r.fail("join", "must be a list of /pointers and =literals");
      m.items.push_back(parse_scalar_mapping(part.as<std::string>(), r, "join"));
    }
  } else if (n["each"]) {
    reader r(n, at.file(), at.qualified(key));
    r.allow_only({"each", "map"});
    m.type = mapping_node::kind::each;
    m.text = r.pointer("each");
    if (!n["map"]) r.fail("map", "is required with each");
    m.items.push_back(parse_mapping(n["map"], r, "map"));
  } else {
    m.type = mapping_node::kind::object;
    for (const auto& kv : n) {
      auto name = kv.first.as<std::string>();
      reader r(n, at.file(), at.qualified(key));
      m.fields.emplace_back(name, parse_mapping(kv.second, r, name));
    }
  }
  return m;
}

mapping_node parse_mapping(const YAML::Node& n, const reader& at, const std::string& key) {
  if (n.IsScalar()) return parse_scalar_mapping(n.as<std::string>(), at, key);
  if (n.IsSequence()) {
    mapping_node m;
    m.type = mapping_node::kind::array;
    for (std::size_t i = 0; i < n.size(); ++i)
      m.items.push_back(parse_mapping(n[i], at, fmt::format("{}[{}]", key, i)));
    return m;
  }
  if (n.IsMap()) return parse_mapping_form(n, at, key);
  at.fail(key, "must be a /pointer, =literal, list or mapping");
}

auth_spec parse_auth(const reader& r) {
  auth_spec a;
  a.scheme = r.one_of("scheme", {"none", "bearer", "header", "query", "basic", "oauth2_refresh"}, "none");
  r.allow_only({"scheme", "token", "header", "param", "value", "username", "password", "token_url"});
  a.token = r.string("token", "{auth.token|auth.access_token}");
  a.value = r.string("value", "{auth.key|auth.token}");
  a.username = r.string("username", "{auth.key|auth.token}");
  a.password = r.string("password", "");
  a.token_url = r.string("token_url", "{auth.token_url}");
  if (a.scheme == "header") a.header = r.string("header");
  if (a.scheme == "query") a.param = r.string("param");
  return a;
}

pagination_spec parse_pagination(const reader& r) {
  pagination_spec p;
  p.style = r.one_of("style", {"none", "offset", "page", "cursor", "link_header", "next_url"}, "none");
  p.more = r.pointer("more");
  if (p.style == "none") {
    r.allow_only({"style"});
  } else if (p.style == "offset") {
    r.allow_only({"style", "offset_param", "limit_param", "limit", "next_offset", "more", "short_page_ends"});
    p.offset_param = r.string("offset_param");
    p.limit_param = r.string("limit_param");
    p.limit = r.integer("limit", 100, 1, 100000);
    p.next_offset = r.pointer("next_offset");
    p.short_page_ends = r.boolean("short_page_ends", false);
  } else if (p.style == "page") {
    r.allow_only({"style", "page_param", "size_param", "size", "first_page", "more", "short_page_ends"});
    p.page_param = r.string("page_param");
    p.size_param = r.string("size_param");
    p.size = r.integer("size", 100, 1, 100000);
    p.first_page = r.integer("first_page", 1, 0, 1);
    p.short_page_ends = r.boolean("short_page_ends", false);
  } else if (p.style == "cursor") {
    r.allow_only({"style", "cursor_param", "cursor", "cursor_from_last", "limit_param", "limit", "more"});
    p.cursor_param = r.string("cursor_param");
    p.cursor = r.pointer("cursor");
    p.cursor_from_last = r.pointer("cursor_from_last");
    if (p.cursor.empty() == p.cursor_from_last.empty())
      r.fail("cursor", "give exactly one of cursor and cursor_from_last");
    p.limit_param = r.string("limit_param", "");
    p.limit = r.integer("limit", 100, 1, 100000);
  } else if (p.style == "link_header") {
    r.allow_only({"style", "size_param", "size", "more"});
    p.size_param = r.string("size_param", "");
    p.size = r.integer("size", 100, 1, 100000);
  } else {
    r.allow_only({"style", "next_url", "more"});
    p.next_url = r.pointer("next_url");
    if (p.next_url.empty()) r.fail("next_url", "is required");
  }
  return p;
}

integration_object parse_object(const reader& r, const std::string& object_type) {
  if (!is_unified_object_type(object_type)) r.fail("", "is not a Unified object type");
  r.allow_only({"path", "query", "records", "id", "updated_at", "pagination", "incremental",
                "tombstones", "filters", "volatile", "mapping"});
  integration_object o;
  o.object_type = object_type;
  o.path = r.string("path");
  if (!o.path.starts_with("/")) r.fail("path", "must start with /");
  o.query = r.string_map("query");
  o.records = r.pointer("records");
  o.id = r.pointer("id", "/id");
  o.updated_at = r.pointer("updated_at");
  if (auto p = r.child("pagination")) o.pagination = parse_pagination(*p);
  if (auto inc = r.child("incremental")) {
    inc->allow_only({"param", "format"});
    o.incremental = incremental_spec{
        inc->string("param"),
        inc->one_of("format", {"iso8601", "iso8601_seconds", "unix_seconds", "unix_millis", "date"},
                    "iso8601")};
  }
  if (auto t = r.child("tombstones")) {
    t->allow_only({"field", "query"});
    o.tombstones = tombstone_spec{t->pointer("field"), t->string_map("query")};
    if (o.tombstones->field.empty() && o.tombstones->query.empty())
      t->fail("field", "give field, query or both");
  }
  o.filters = r.string_map("filters");
  o.volatile_fields = r.string_list("volatile", false);
  if (!r.has("mapping")) r.fail("mapping", "is required (identity or a mapping)");
  const auto& m = r.node()["mapping"];
  if (m.IsScalar() && m.as<std::string>() == "identity") return o;
  if (!m.IsMap()) r.fail("mapping", "must be identity or a mapping of Unified fields");
  o.mapping = std::make_shared<mapping_node>(parse_mapping(m, r, "mapping"));
  return o;
}

bool is_type_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

void parse_top(const reader& r, integration& i) {
  r.allow_only({"type", "name", "categories", "base_url", "auth", "headers", "rate_limit", "objects"});
  i.type = r.string("type");
  if (!is_type_name(i.type)) r.fail("type", "must be lowercase letters, digits and _");
  i.name = r.string("name");
  i.categories = r.string_list("categories", true);
  i.base_url = r.string("base_url");
  if (!i.base_url.starts_with("{") && check_http_url(i.base_url))
    r.fail("base_url", "must be an http(s) URL or a template such as {auth.api_url}");
  if (auto a = r.child("auth")) i.auth = parse_auth(*a);
  i.headers = r.string_map("headers");
  if (auto rl = r.child("rate_limit")) {
    rl->allow_only({"requests_per_second", "concurrency"});
    i.requests_per_second = rl->number("requests_per_second", 10, 0.01, 10000);
    i.concurrency = rl->integer("concurrency", 2, 1, 100);
  }
}

}  // namespace

integration integration_registry::parse(const std::string& yaml_text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw definition_error(fmt::format("integration definition {}: invalid YAML: {}", file, e.what()));
  }
  if (!root.IsMap()) throw definition_error(fmt::format("integration definition {}: not a mapping", file));
  reader top(root, file, "");
  integration i;
  parse_top(top, i);
  auto objects = top.child("objects");
  if (!objects || objects->node().size() == 0) top.fail("objects", "must be a non-empty mapping of object types");
  for (const auto& kv : objects->node()) {
    auto type = kv.first.as<std::string>();
    auto o = objects->child(type);
    i.objects.emplace(type, parse_object(*o, type));
  }
  return i;
}

integration_registry integration_registry::load(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw definition_error(fmt::format("integration definitions directory {} does not exist",
                                       dir.string()));
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  integration_registry registry;
  for (const auto& path : files) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    auto i = parse(text.str(), path.string());
    if (i.type != path.stem().string())
      throw definition_error(fmt::format("integration definition {}: key 'type': must match the file name ({})",
                                         path.string(), path.stem().string()));
    registry.add(std::move(i));
  }
  if (registry.integrations_.empty())
    throw definition_error(fmt::format("no integration definitions (*.yaml) in {}", dir.string()));
  return registry;
}

const integration* integration_registry::find(std::string_view type) const {
  auto it = integrations_.find(std::string(type));
  return it == integrations_.end() ? nullptr : &it->second;
}

std::string integration_registry::type_list() const {
  std::string out;
  for (const auto& [type, _] : integrations_) out += (out.empty() ? "" : ", ") + type;
  return out;
}

}  // namespace hookd::sources
