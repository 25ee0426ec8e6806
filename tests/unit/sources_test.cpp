#include <doctest/doctest.h>

#include "core/json.hpp"
#include "sources/integration_registry.hpp"
#include "sources/mapping.hpp"
#include "sources/poller.hpp"
#include "sources/template.hpp"

using namespace hookd;
using namespace hookd::sources;

namespace {
std::string map_with(const std::string& mapping_yaml, const std::string& record) {
  auto i = integration_registry::parse(
      "type: x\nname: X\ncategories: [crm]\nbase_url: https://a\nobjects:\n  crm_contact:\n"
      "    path: /c\n    mapping:\n" + mapping_yaml,
      "t.yaml");
  json::document doc;
  REQUIRE_FALSE(json::document::parse(record, doc));
  auto out = render(*i.object("crm_contact")->mapping, doc.root());
  return out.value_or("<absent>");
}
}  // namespace

TEST_CASE("mapping: pointers, literals, nested objects, arrays, absent values") {
  auto out = map_with(R"(
      first_name: /properties/firstname
      last_name: /properties/lastname
      emails: [{email: /properties/email, type: "=WORK"}, {email: /properties/other}]
      address: {city: /addr/city, region: /addr/region}
      missing: /nope
)",
                      R"({"properties":{"firstname":"Ada","lastname":null,"email":"a@x.io"},"addr":{}})");
  CHECK(out == R"({"first_name":"Ada","emails":[{"email":"a@x.io","type":"WORK"}]})");
}

TEST_CASE("mapping: each, join and conversions") {
  auto out = map_with(R"(
      name: {join: [/first, /last], sep: " "}
      telephones: {each: /phones, map: {telephone: /number, type: /kind}}
      tags: {each: /tags, map: "@"}
      created_at: {from: /created, as: timestamp}
      updated_at: {from: /updated, as: timestamp}
      modified_at: {from: /modified, as: timestamp}
      id_text: {from: /num, as: string}
      amount: {from: /amount, as: number}
      active: {from: /active, as: boolean}
)",
                      R"({"first":"Ada","last":"Lovelace","phones":[{"number":"1","kind":"MOBILE"},{"number":"2"}],
                          "tags":["a","b"],"created":1700000000,"updated":1700000000123,
                          "modified":"2023-11-15T00:13:20+02:00","num":42,"amount":"12.5","active":"true"})");
  CHECK(out == R"({"name":"Ada Lovelace","telephones":[{"telephone":"1","type":"MOBILE"},{"telephone":"2"}],)"
               R"("tags":["a","b"],"created_at":"2023-11-14T22:13:20.000Z","updated_at":"2023-11-14T22:13:20.123Z",)"
               R"("modified_at":"2023-11-14T22:13:20.000Z","id_text":"42","amount":12.5,"active":true})");
}

TEST_CASE("templates expand auth keys, alternatives and optional values") {
  json::document doc;
  REQUIRE_FALSE(json::document::parse(R"({"token":"t1","meta":{"owner":"octo","n":3},"empty":""})", doc));
  auto auth = std::optional(doc.root());
  CHECK(expand_template("/repos/{auth.meta.owner}/x/{auth.meta.n}", auth).value == "/repos/octo/x/3");
  CHECK(expand_template("{auth.access_token|auth.token}", auth).value == "t1");
  auto missing = expand_template("{auth.key}", auth);
  CHECK_FALSE(missing);
  CHECK(missing.missing == "auth.key");
  auto empty_is_missing = expand_template("{auth.empty}", auth);
  CHECK_FALSE(empty_is_missing);
  auto optional = expand_template("Bearer {auth.key|}", auth);
  CHECK(optional);
  CHECK(optional.value == "Bearer ");
  CHECK(expand_template("plain", std::nullopt).value == "plain");
}

TEST_CASE("Link header: rel=next among others") {
  CHECK(link_next(R"(<https://a/x?page=1>; rel="first", <https://a/x?page=2>; rel="next", <https://a/x?page=9>; rel="last")") ==
        "https://a/x?page=2");
  CHECK(link_next(R"(<https://a/x?page=2>; rel=next)") == "https://a/x?page=2");
  CHECK(link_next(R"(<https://a/x?page=2>; rel="prev next")") == "https://a/x?page=2");
  CHECK(link_next(R"(<https://a/x?page=1>; rel="prev", <https://a/x?page=9>; rel="last")").empty());
  CHECK(link_next("").empty());
}

TEST_CASE("Retry-After: seconds or HTTP date") {
  auto now = from_unix_millis(1445412480000);  // Wed, 21 Oct 2015 07:28:00 GMT
  CHECK(parse_retry_after("2", now) == std::chrono::seconds(2));
  CHECK(parse_retry_after(" 120 ", now) == std::chrono::seconds(120));
  CHECK(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now) == std::chrono::seconds(30));
  CHECK(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now) == std::chrono::seconds(0));
  CHECK_FALSE(parse_retry_after("soon", now));
}

TEST_CASE("query components are percent-encoded") {
  CHECK(url_encode("a b&c=d/é") == "a%20b%26c%3Dd%2F%C3%A9");
  CHECK(url_encode("safe-_.~09AZ") == "safe-_.~09AZ");
}
