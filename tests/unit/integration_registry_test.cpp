#include <doctest/doctest.h>

#include "sources/integration_registry.hpp"

using namespace hookd::sources;

namespace {
std::string message_of(const std::string& yaml) {
  try {
    integration_registry::parse(yaml, "bad.yaml");
  } catch (const definition_error& e) {
    return e.what();
  }
  return "no error";
}

const std::string head = "type: x\nname: X\ncategories: [crm]\nbase_url: https://api.example.com\n";
}  // namespace

TEST_CASE("the shipped definitions load") {
  auto registry = integration_registry::load(HOOKD_SOURCE_DIR "/integrations");
  const auto* js = registry.find("jsonserver");
  REQUIRE(js);
  CHECK(js->supports("crm_contact"));
  CHECK(js->object("crm_contact")->path == "/contacts");
  CHECK(js->object("crm_contact")->pagination.style == "link_header");
  CHECK(js->object("crm_contact")->incremental->param == "updated_at_gte");
  CHECK(js->object("crm_contact")->mapping == nullptr);  // identity
  CHECK_FALSE(js->supports("crm_pipeline"));
}

TEST_CASE("a full definition parses") {
  auto i = integration_registry::parse(head + R"(
auth: {scheme: query, param: api_token}
headers: {accept: application/json}
rate_limit: {requests_per_second: 5, concurrency: 1}
objects:
  crm_contact:
    path: /persons
    query: {sort: id}
    records: /data
    updated_at: /update_time
    pagination: {style: offset, offset_param: start, limit_param: limit, limit: 50, next_offset: /additional_data/pagination/next_start, more: /additional_data/pagination/more_items_in_collection}
    incremental: {param: since, format: unix_seconds}
    tombstones: {field: /deleted}
    filters: {email: term}
    volatile: [last_seen_at]
    mapping:
      name: /name
      emails: {each: /email, map: {email: /value, type: "=WORK"}}
      created_at: {from: /add_time, as: timestamp}
      title: {join: [/first, /last], sep: " "}
      telephones: [{telephone: /phone}]
)",
                                       "ok.yaml");
  CHECK(i.auth.scheme == "query");
  CHECK(i.auth.param == "api_token");
  CHECK(i.requests_per_second == 5);
  const auto* o = i.object("crm_contact");
  REQUIRE(o);
  CHECK(o->records == "/data");
  CHECK(o->pagination.limit == 50);
  CHECK(o->pagination.next_offset == "/additional_data/pagination/next_start");
  CHECK(o->incremental->format == "unix_seconds");
  CHECK(o->tombstones->field == "/deleted");
  CHECK(o->filters.at("email") == "term");
  CHECK(o->volatile_fields == std::vector<std::string>{"last_seen_at"});
  REQUIRE(o->mapping);
  CHECK(o->mapping->fields.size() == 5);
}

TEST_CASE("a bad definition names the file and the key") {
  auto m = message_of(head + "objects: {crm_contact: {path: /c, mapping: identity}}\nbogus: 1\n");
  CHECK(m.find("bad.yaml") != std::string::npos);
  CHECK(m.find("'bogus'") != std::string::npos);
  m = message_of(head + "objects: {crm_rocket: {path: /c, mapping: identity}}\n");
  CHECK(m.find("objects.crm_rocket") != std::string::npos);
  m = message_of(head + "objects: {crm_contact: {path: c, mapping: identity}}\n");
  CHECK(m.find("objects.crm_contact.path") != std::string::npos);
  m = message_of("type: x\nname: X\nbase_url: https://a\nobjects: {crm_contact: {path: /c, mapping: identity}}\n");
  CHECK(m.find("'categories'") != std::string::npos);
  m = message_of("type: [x\n");
  CHECK(m.find("invalid YAML") != std::string::npos);
  m = message_of(head + "objects: {crm_contact: {path: /c, mapping: identity, pagination: {style: sideways}}}\n");
  CHECK(m.find("objects.crm_contact.pagination.style") != std::string::npos);
  CHECK(m.find("link_header") != std::string::npos);
  m = message_of(head + "auth: {scheme: magic}\nobjects: {crm_contact: {path: /c, mapping: identity}}\n");
  CHECK(m.find("auth.scheme") != std::string::npos);
  m = message_of(head + "objects: {crm_contact: {path: /c, mapping: {name: firstname}}}\n");
  CHECK(m.find("objects.crm_contact.mapping.name") != std::string::npos);
  m = message_of(head + "objects: {crm_contact: {path: /c}}\n");
  CHECK(m.find("objects.crm_contact.mapping") != std::string::npos);
  m = message_of(head + "objects: {crm_contact: {path: /c, mapping: identity, pagination: {style: cursor, cursor_param: after}}}\n");
  CHECK(m.find("cursor") != std::string::npos);
  m = message_of("type: x\nname: X\ncategories: [crm]\nbase_url: ftp://x\nobjects: {crm_contact: {path: /c, mapping: identity}}\n");
  CHECK(m.find("'base_url'") != std::string::npos);
}
