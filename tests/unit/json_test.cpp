#include <doctest/doctest.h>

#include "core/json.hpp"
#include "core/model.hpp"

using namespace hookd;

TEST_CASE("writer escapes strings and separates members") {
  json::writer w;
  w.begin_object().field("a", "x\"y\n\x01").field("n", 3).field("b", true);
  w.key("arr").begin_array().value("1").value(2.5).null().end_array();
  w.end_object();
  CHECK(w.str() == R"({"a":"x\"y\n\u0001","n":3,"b":true,"arr":["1",2.5,null]})");
}

TEST_CASE("numbers print like JavaScript") {
  CHECK(json::format_number(60) == "60");
  CHECK(json::format_number(0.5) == "0.5");
  CHECK(json::format_number(-2) == "-2");
}

TEST_CASE("document parse reports malformed JSON") {
  json::document doc;
  CHECK(json::document::parse("{\"a\":1}", doc) == std::nullopt);
  CHECK(doc.root().is_object());
  auto err = json::document::parse("{\"a\":", doc);
  REQUIRE(err);
  CHECK(err->find("malformed JSON") != std::string::npos);
}

TEST_CASE("a webhook encodes every field the SDK requires and never db_url") {
  webhook h{};
  h.id = "w1";
  h.connection_id = "conn-1";
  h.object_type = "crm_contact";
  h.event = "created";
  h.hook_url = "https://example.com/hook";
  h.db_url = "postgres://user:secret@db/x";
  h.db_type = "postgres";
  h.created_at = from_unix_millis(1700000000123);
  h.updated_at = h.created_at;
  h.filters = {{"k", "v"}};
  auto text = to_json(h);
  CHECK(text.find(R"("connection_id":"conn-1")") != std::string::npos);
  CHECK(text.find(R"("object_type":"crm_contact")") != std::string::npos);
  CHECK(text.find(R"("event":"created")") != std::string::npos);
  CHECK(text.find(R"("created_at":"2023-11-14T22:13:20.123Z")") != std::string::npos);
  CHECK(text.find(R"("filters":{"k":"v"})") != std::string::npos);
  CHECK(text.find(R"("interval":60)") != std::string::npos);
  CHECK(text.find("secret") == std::string::npos);
  CHECK(text.find("db_url") == std::string::npos);
  json::document doc;
  CHECK(json::document::parse(text, doc) == std::nullopt);
}

TEST_CASE("a connection's auth is redacted") {
  connection c;
  c.auth_json = R"({"token":"tok_secret","api_url":"http://src","meta":{"x":"hidden"},"expires_in":5})";
  auto text = to_json(c);
  CHECK(text.find("tok_secret") == std::string::npos);
  CHECK(text.find("hidden") == std::string::npos);
  CHECK(text.find(R"("token":"********")") != std::string::npos);
  CHECK(text.find(R"("api_url":"http://src")") != std::string::npos);
  CHECK(text.find(R"("categories":[])") != std::string::npos);
  CHECK(text.find(R"("permissions":[])") != std::string::npos);
}
