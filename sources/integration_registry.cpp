#include "sources/integration_registry.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "core/object_types.hpp"

namespace hookd::sources {
namespace {

[[noreturn]] void fail(const std::string& file, const std::string& key, const std::string& what) {
  throw definition_error(fmt::format("integration definition {}: key '{}': {}", file, key, what));
}

std::string read_string(const YAML::Node& node, const std::string& file, const std::string& key) {
  if (!node || !node.IsScalar()) fail(file, key, "must be a string");
  return node.as<std::string>();
}

void check_keys(const YAML::Node& map, const std::set<std::string>& allowed,
                const std::string& file, const std::string& prefix) {
  for (const auto& kv : map) {
    auto k = kv.first.as<std::string>();
    if (!allowed.contains(k)) {
      std::string valid;
      for (const auto& a : allowed) valid += (valid.empty() ? "" : ", ") + a;
      fail(file, prefix + k, "unknown key; valid keys: " + valid);
    }
  }
}

bool is_type_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

integration_object parse_object(const YAML::Node& node, const std::string& file,
                                const std::string& object_type) {
  const std::string prefix = "objects." + object_type;
  if (!is_unified_object_type(object_type))
    fail(file, prefix, "is not a Unified object type");
  if (!node.IsMap()) fail(file, prefix, "must be a mapping");
  check_keys(node, {"path"}, file, prefix + ".");
  integration_object o{object_type, read_string(node["path"], file, prefix + ".path")};
  if (!o.path.starts_with("/")) fail(file, prefix + ".path", "must start with /");
  return o;
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
  check_keys(root, {"type", "name", "categories", "objects"}, file, "");
  integration i;
  i.type = read_string(root["type"], file, "type");
  if (!is_type_name(i.type)) fail(file, "type", "must be lowercase letters, digits and _");
  i.name = read_string(root["name"], file, "name");
  auto cats = root["categories"];
  if (!cats || !cats.IsSequence() || cats.size() == 0)
    fail(file, "categories", "must be a non-empty list of strings");
  for (const auto& c : cats) {
    if (!c.IsScalar()) fail(file, "categories", "must be a list of strings");
    i.categories.push_back(c.as<std::string>());
  }
  auto objects = root["objects"];
  if (!objects || !objects.IsMap() || objects.size() == 0)
    fail(file, "objects", "must be a non-empty mapping of object types");
  for (const auto& kv : objects) {
    auto type = kv.first.as<std::string>();
    i.objects.emplace(type, parse_object(kv.second, file, type));
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
      fail(path.string(), "type", fmt::format("must match the file name ({})", path.stem().string()));
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
