#pragma once
// The integration definitions shipped in integrations/*.yaml (docs/integration-definitions.md),
// loaded and validated at start-up. A bad definition is a start-up error naming the file and
// the key.
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "sources/mapping.hpp"

namespace hookd::sources {

struct definition_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct auth_spec {
  std::string scheme = "none";  // none | bearer | header | query | basic | oauth2_refresh
  std::string token;            // bearer
  std::string header;           // header
  std::string param;            // query
  std::string value;            // header, query
  std::string username;         // basic
  std::string password;         // basic
  std::string token_url;        // oauth2_refresh
};

struct pagination_spec {
  std::string style = "none";  // none | offset | page | cursor | link_header | next_url
  std::string offset_param, limit_param, next_offset;
  int limit = 0;
  std::string page_param, size_param;
  int size = 0;
  int first_page = 1;
  std::string cursor_param, cursor, cursor_from_last;
  std::string next_url;
  std::string more;  // pointer to a "more pages" boolean
  // offset/page without `more` or `next_offset`: a page with fewer records than asked for ends
  // the scan only when the definition says the API never caps pages below the asked size
  // (many do, silently); otherwise the scan goes on to an empty page.
  bool short_page_ends = false;
};

struct incremental_spec {
  std::string param;
  std::string format = "iso8601";  // iso8601 | iso8601_seconds | unix_seconds | unix_millis | date
};

struct tombstone_spec {
  std::string field;                         // pointer into the source record
  std::map<std::string, std::string> query;  // a second listing of deleted records
};

struct integration_object {
  std::string object_type;
  std::string path;
  std::map<std::string, std::string> query;
  std::string records;  // pointer to the records array; "" = the body
  std::string id = "/id";
  std::string updated_at;
  pagination_spec pagination;
  std::optional<incremental_spec> incremental;
  std::optional<tombstone_spec> tombstones;
  std::map<std::string, std::string> filters;  // unified key -> query parameter
  std::vector<std::string> volatile_fields;
  std::shared_ptr<const mapping_node> mapping;  // null: identity
};

struct integration {
  std::string type;  // the file's name without .yaml
  std::string name;
  std::vector<std::string> categories;
  std::string base_url;
  auth_spec auth;
  std::map<std::string, std::string> headers;
  double requests_per_second = 10;
  int concurrency = 2;
  std::map<std::string, integration_object> objects;  // by object_type

  bool supports(std::string_view object_type) const {
    return objects.find(std::string(object_type)) != objects.end();
  }
  const integration_object* object(std::string_view object_type) const {
    auto it = objects.find(std::string(object_type));
    return it == objects.end() ? nullptr : &it->second;
  }
};

class integration_registry {
public:
  // Loads every *.yaml file of `dir`. Throws definition_error.
  static integration_registry load(const std::filesystem::path& dir);
  // Parses one definition (exposed for tests); `file` is used in error messages.
  static integration parse(const std::string& yaml_text, const std::string& file);

  const integration* find(std::string_view type) const;
  const std::map<std::string, integration>& all() const { return integrations_; }
  // "a, b, c": for error messages that list the valid types.
  std::string type_list() const;

  void add(integration i) { integrations_[i.type] = std::move(i); }

private:
  std::map<std::string, integration> integrations_;
};

}  // namespace hookd::sources
