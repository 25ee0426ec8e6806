#pragma once
// The integration definitions shipped in integrations/*.yaml, loaded and validated at
// start-up. A bad definition is a start-up error naming the file and the key.
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace hookd::sources {

struct definition_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct integration_object {
  std::string object_type;  // a Unified object type, e.g. crm_contact
  std::string path;         // the list request's path, e.g. /contacts
};

struct integration {
  std::string type;  // e.g. jsonserver; the file's name without .yaml
  std::string name;
  std::vector<std::string> categories;
  std::map<std::string, integration_object> objects;  // by object_type

  bool supports(std::string_view object_type) const {
    return objects.find(std::string(object_type)) != objects.end();
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
