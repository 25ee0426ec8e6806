#include <doctest/doctest.h>

#include "core/query.hpp"

using namespace hookd;

namespace {
std::variant<list_query, api_error> parse(std::string_view q, list_kind kind = list_kind::webhooks) {
  auto params = parse_query(q);
  REQUIRE(params);
  return parse_list_query(*params, kind);
}
}  // namespace

TEST_CASE("query strings are percent-decoded") {
  auto p = parse_query("a=1&b=x%20y+z&c=%2Fpath&flag");
  REQUIRE(p);
  CHECK(p->find("b")->second == "x y z");
  CHECK(p->find("c")->second == "/path");
  CHECK(p->count("flag") == 1);
  CHECK_FALSE(parse_query("a=%zz"));
  CHECK_FALSE(parse_query("a=%4"));
}

TEST_CASE("list parameters") {
  auto r = parse("limit=5&offset=10&sort=updated_at&order=desc&object=crm_contact&is_healthy=false"
                 "&updated_gte=2024-01-01T00:00:00Z&connection_id=c1&integration_type=jsonserver");
  auto& q = std::get<list_query>(r);
  CHECK(q.limit == 5);
  CHECK(q.offset == 10);
  CHECK(q.sort == "updated_at");
  CHECK(q.descending);
  CHECK(q.object_type == "crm_contact");
  CHECK(q.is_healthy == false);
  CHECK(q.updated_gte.has_value());
  CHECK(q.connection_id == "c1");
}

TEST_CASE("bad list parameters name the parameter") {
  CHECK(std::get<api_error>(parse("limit=0")).field == "limit");
  CHECK(std::get<api_error>(parse("limit=abc")).field == "limit");
  CHECK(std::get<api_error>(parse("offset=-1")).field == "offset");
  CHECK(std::get<api_error>(parse("sort=color")).field == "sort");
  CHECK(std::get<api_error>(parse("order=up")).message.find("asc, desc") != std::string::npos);
  CHECK(std::get<api_error>(parse("updated_gte=yesterday")).field == "updated_gte");
  CHECK(std::get<api_error>(parse("is_healthy=maybe")).field == "is_healthy");
  CHECK(std::get<api_error>(parse("colour=red")).field == "colour");
  CHECK(std::get<api_error>(parse("object=x", list_kind::connections)).field == "object");
}

TEST_CASE("connection categories accept repeated and comma-separated values") {
  auto r = parse("categories=crm,ats&categories=hris", list_kind::connections);
  CHECK(std::get<list_query>(r).categories == std::vector<std::string>{"crm", "ats", "hris"});
}
