#include <doctest/doctest.h>

#include "core/json.hpp"
#include "core/validation.hpp"

using namespace hookd;

namespace {
std::optional<api_error> apply_body(std::string_view body, webhook& h) {
  json::document doc;
  REQUIRE(json::document::parse(body, doc) == std::nullopt);
  return apply_webhook_body(doc.root(), h);
}

webhook valid_webhook() {
  webhook h;
  REQUIRE_FALSE(apply_body(R"({"connection_id":"c","object_type":"crm_contact","event":"created",
                          "hook_url":"https://example.com/h","interval":5})", h));
  return h;
}
}  // namespace

TEST_CASE("a complete webhook validates") {
  CHECK_FALSE(validate_webhook(valid_webhook(), {}));
}

TEST_CASE("required fields are named") {
  for (auto field : {"connection_id", "object_type", "event"}) {
    webhook h = valid_webhook();
    REQUIRE_FALSE(apply_body(fmt::format(R"({{"{}":null}})", field), h));
    auto e = validate_webhook(h, {});
    REQUIRE(e);
    CHECK(e->field == field);
    CHECK(e->status == 400);
  }
}

TEST_CASE("enums list their valid values") {
  webhook h = valid_webhook();
  REQUIRE_FALSE(apply_body(R"({"event":"changed"})", h));
  auto e = validate_webhook(h, {});
  REQUIRE(e);
  CHECK(e->field == "event");
  CHECK(e->message.find("created, updated, deleted") != std::string::npos);

  h = valid_webhook();
  REQUIRE_FALSE(apply_body(R"({"db_type":"mysql","db_url":"postgres://x/y"})", h));
  e = validate_webhook(h, {});
  REQUIRE(e);
  CHECK(e->field == "db_type");
  CHECK(e->message.find("postgres, supabase") != std::string::npos);
}

TEST_CASE("object_type must be a Unified object type") {
  webhook h = valid_webhook();
  REQUIRE_FALSE(apply_body(R"({"object_type":"crm_spaceship"})", h));
  auto e = validate_webhook(h, {});
  REQUIRE(e);
  CHECK(e->field == "object_type");
}

TEST_CASE("interval respects the configured minimum") {
  webhook h = valid_webhook();
  REQUIRE_FALSE(apply_body(R"({"interval":0.5})", h));
  CHECK(validate_webhook(h, {.min_interval_minutes = 1}));
  CHECK_FALSE(validate_webhook(h, {.min_interval_minutes = 0.5}));
  REQUIRE_FALSE(apply_body(R"({"interval":-3})", h));
  CHECK(validate_webhook(h, {.min_interval_minutes = 0.1})->field == "interval");
}

TEST_CASE("hook_url must be an absolute http(s) URL") {
  for (auto url : {"ftp://x/y", "example.com/hook", "http://", "http://host:99999/",
                   "https://user:pw@host/", "http://ho st/"}) {
    webhook h = valid_webhook();
    h.hook_url = url;
    auto e = validate_webhook(h, {});
    REQUIRE_MESSAGE(e, url);
    CHECK(e->field == "hook_url");
  }
  for (auto url : {"http://localhost:8080/x", "https://[::1]:9/h?q=1", "https://a.b"}) {
    webhook h = valid_webhook();
    h.hook_url = url;
    CHECK_MESSAGE(!validate_webhook(h, {}), url);
  }
}

TEST_CASE("page_max_limit is an integer in range") {
  webhook h = valid_webhook();
  CHECK(apply_body(R"({"page_max_limit":2.5})", h)->field == "page_max_limit");
  REQUIRE_FALSE(apply_body(R"({"page_max_limit":0})", h));
  CHECK(validate_webhook(h, {})->field == "page_max_limit");
  REQUIRE_FALSE(apply_body(R"({"page_max_limit":1000})", h));
  CHECK_FALSE(validate_webhook(h, {}));
  CHECK(validate_webhook(h, {.max_page_limit = 500})->field == "page_max_limit");
}

TEST_CASE("filters must be a dictionary of strings") {
  webhook h = valid_webhook();
  auto e = apply_body(R"({"filters":{"a":1}})", h);
  REQUIRE(e);
  CHECK(e->field == "filters.a");
  CHECK(apply_body(R"({"filters":["a"]})", h)->field == "filters");
  CHECK_FALSE(apply_body(R"({"filters":{"a":"1"}})", h));
  CHECK(h.filters.at("a") == "1");
}

TEST_CASE("wrong types are named, read-only fields ignored, unknown fields rejected") {
  webhook h = valid_webhook();
  auto e = apply_body(R"({"is_paused":"yes"})", h);
  REQUIRE(e);
  CHECK(e->field == "is_paused");
  CHECK(e->message.find("boolean") != std::string::npos);

  CHECK_FALSE(apply_body(R"({"id":"forged","is_healthy":false,"runs":["x"],"environment":"Production"})", h));
  CHECK(h.id.empty());
  CHECK(h.is_healthy);
  CHECK(h.runs.empty());

  e = apply_body(R"({"hook_ur":"https://typo"})", h);
  REQUIRE(e);
  CHECK(e->code == "unknown_field");
  CHECK(e->field == "hook_ur");
}

TEST_CASE("a rejected body leaves the target unchanged") {
  webhook h = valid_webhook();
  auto before = h.hook_url;
  CHECK(apply_body(R"({"hook_url":"https://changed","interval":"bad"})", h));
  CHECK(h.hook_url == before);
}

TEST_CASE("database sync fields") {
  webhook h = valid_webhook();
  REQUIRE_FALSE(apply_body(R"({"db_type":"postgres"})", h));
  CHECK(validate_webhook(h, {})->field == "db_url");
  REQUIRE_FALSE(apply_body(R"({"db_url":"mysql://x"})", h));
  CHECK(validate_webhook(h, {})->field == "db_url");
  REQUIRE_FALSE(apply_body(R"({"db_url":"postgres://u@h/db","db_schema":"bad-name"})", h));
  CHECK(validate_webhook(h, {})->field == "db_schema");
  REQUIRE_FALSE(apply_body(R"({"db_schema":"public","hook_url":null})", h));
  CHECK_FALSE(validate_webhook(h, {}));  // database sync alone needs no hook_url
}

TEST_CASE("fields is a comma-separated list of names") {
  webhook h = valid_webhook();
  REQUIRE_FALSE(apply_body(R"({"fields":"id, name,emails,raw"})", h));
  CHECK_FALSE(validate_webhook(h, {}));
  REQUIRE_FALSE(apply_body(R"({"fields":"id,,name"})", h));
  CHECK(validate_webhook(h, {})->field == "fields");
}

TEST_CASE("connection bodies") {
  connection c;
  json::document doc;
  REQUIRE_FALSE(json::document::parse(
      R"({"integration_type":"jsonserver","auth":{"token":"t"},"categories":["crm"]})", doc));
  CHECK_FALSE(apply_connection_body(doc.root(), c));
  CHECK(c.auth_json == R"({"token":"t"})");
  CHECK_FALSE(validate_connection(c));

  REQUIRE_FALSE(json::document::parse(R"({"auth":"token"})", doc));
  CHECK(apply_connection_body(doc.root(), c)->field == "auth");
  REQUIRE_FALSE(json::document::parse(R"({"categories":[1]})", doc));
  CHECK(apply_connection_body(doc.root(), c)->field == "categories");
  REQUIRE_FALSE(json::document::parse(R"({"bogus":1})", doc));
  CHECK(apply_connection_body(doc.root(), c)->code == "unknown_field");

  connection empty;
  CHECK(validate_connection(empty)->field == "integration_type");
}
