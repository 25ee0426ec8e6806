#include <doctest/doctest.h>

#include "sources/integration_registry.hpp"

using namespace hookd::sources;

TEST_CASE("the shipped definitions load") {
  auto registry = integration_registry::load(HOOKD_SOURCE_DIR "/integrations");
  const auto* js = registry.find("jsonserver");
  REQUIRE(js);
  CHECK(js->supports("crm_contact"));
  CHECK(js->objects.at("crm_contact").path == "/contacts");
  CHECK_FALSE(js->supports("crm_lead"));
}

TEST_CASE("a bad definition names the file and the key") {
  auto message_of = [](const std::string& yaml) {
    try {
      integration_registry::parse(yaml, "bad.yaml");
    } catch (const definition_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto m = message_of("type: x\nname: X\ncategories: [crm]\nobjects: {crm_contact: {path: /c}}\nbogus: 1\n");
  CHECK(m.find("bad.yaml") != std::string::npos);
  CHECK(m.find("'bogus'") != std::string::npos);
  m = message_of("type: x\nname: X\ncategories: [crm]\nobjects: {crm_rocket: {path: /c}}\n");
  CHECK(m.find("objects.crm_rocket") != std::string::npos);
  m = message_of("type: x\nname: X\ncategories: [crm]\nobjects: {crm_contact: {path: c}}\n");
  CHECK(m.find("objects.crm_contact.path") != std::string::npos);
  m = message_of("type: x\nname: X\nobjects: {crm_contact: {path: /c}}\n");
  CHECK(m.find("'categories'") != std::string::npos);
  m = message_of("type: [x\n");
  CHECK(m.find("invalid YAML") != std::string::npos);
}
