#include <doctest/doctest.h>

#include <string>

#include "core/json_input.hpp"

using namespace hookd;
using namespace std::string_literals;

namespace {

std::optional<json::input_problem> check(std::string_view text, std::size_t max_depth = 64) {
  json::document doc;
  return json::parse_input(text, doc, max_depth);
}

std::string nested(std::size_t depth) {
  std::string text;
  for (std::size_t i = 0; i < depth; ++i) text += R"({"a":)";
  text += "1";
  for (std::size_t i = 0; i < depth; ++i) text += "}";
  return text;
}

}  // namespace

TEST_CASE("an ordinary body passes") {
  CHECK_FALSE(check(R"({"a":1,"b":"x","c":[1,2,{"d":null}],"e":{"f":true},"g":1e-400})"));
  CHECK_FALSE(check(R"({"big":18446744073709551615,"neg":-9223372036854775808,"f":1.5e308})"));
  CHECK_FALSE(check(R"({"emoji":"\ud83d\ude00","raw":"é€😀"})"));
}

TEST_CASE("nesting up to the limit passes, one level more is refused") {
  CHECK_FALSE(check(nested(64)));
  auto p = check(nested(65));
  REQUIRE(p);
  CHECK(p->field == "");
  CHECK(p->message == "the JSON nests objects and arrays deeper than 64 levels");
  CHECK_FALSE(check("[[[1]]]", 3));
  CHECK(check("[[[[1]]]]", 3));
}

TEST_CASE("nesting deeper than the parser's own limit names the depth limit too") {
  std::string text(5000, '[');
  text += std::string(5000, ']');
  auto p = check(text);
  REQUIRE(p);
  CHECK(p->message == "the JSON nests objects and arrays deeper than 64 levels");
}

TEST_CASE("a number out of range names its member") {
  auto p = check(R"({"interval":1e400})");
  REQUIRE(p);
  CHECK(p->field == "interval");
  CHECK(p->message == "'interval' is a number out of range: 1e400");
  p = check(R"({"a":1,"page_max_limit":123456789012345678901234567890})");
  REQUIRE(p);
  CHECK(p->field == "page_max_limit");
  p = check(R"({"auth":{"meta":[0,-123456789012345678901234567890]}})");
  REQUIRE(p);
  CHECK(p->field == "auth.meta[1]");
  p = check(R"({"x":-1e400})");
  REQUIRE(p);
  CHECK(p->field == "x");
}

TEST_CASE("a key that appears twice is refused at its path") {
  auto p = check(R"({"event":"created","event":"deleted"})");
  REQUIRE(p);
  CHECK(p->field == "event");
  CHECK(p->message == "'event' appears twice; a key may appear only once in an object");
  p = check(R"({"filters":{"k":"1","j":"2","k":"3"}})");
  REQUIRE(p);
  CHECK(p->field == "filters.k");
  // Escapes spell the same key differently: still the same key.
  p = check(R"({"ab":1,"a\u0062":2})");
  REQUIRE(p);
  CHECK(p->field == "ab");
  CHECK_FALSE(check(R"({"a":{"k":1},"b":{"k":1}})"));
}

TEST_CASE("NUL characters in strings and keys are refused") {
  auto p = check(R"({"connection_id":"abc\u0000def"})");
  REQUIRE(p);
  CHECK(p->field == "connection_id");
  CHECK(p->message == "'connection_id' contains a NUL character (\\u0000)");
  p = check(R"({"auth":{"tags":["x","\u0000"]}})");
  REQUIRE(p);
  CHECK(p->field == "auth.tags[1]");
  p = check(R"({"auth":{"k\u0000":"v"}})");
  REQUIRE(p);
  CHECK(p->field == "auth");
  CHECK(p->message == "a key in 'auth' contains a NUL character (\\u0000)");
  // A raw NUL byte is an unescaped control character: malformed JSON, located.
  p = check("{\"hook_url\":\"a\0b\"}"s);
  REQUIRE(p);
  CHECK(p->field == "hook_url");
  CHECK(p->message == "'hook_url' contains an unescaped control character");
}

TEST_CASE("invalid UTF-8 in a string or key is refused at its path") {
  auto p = check("{\"event\":\"cr\xff" "eated\"}");
  REQUIRE(p);
  CHECK(p->field == "event");
  CHECK(p->message == "'event' is not valid UTF-8");
  p = check("{\"a\":{\"k\xc3\":1}}");
  REQUIRE(p);
  CHECK(p->field == "a");
  CHECK(p->message == "a key in 'a' is not valid UTF-8");
  // Overlong encodings and encoded surrogates are not UTF-8 either.
  CHECK(check("{\"a\":\"\xc0\xaf\"}"));
  CHECK(check("{\"a\":\"\xed\xa0\x80\"}"));
}

TEST_CASE("unpaired surrogate escapes are refused at their path") {
  auto p = check(R"({"fields":"\ud800"})");
  REQUIRE(p);
  CHECK(p->field == "fields");
  CHECK(p->message.find("unpaired UTF-16 surrogate") != std::string::npos);
  CHECK(check(R"({"fields":"\udc00\ud800"})"));
  CHECK(check(R"({"fields":"\ud800\u0041"})"));
}

TEST_CASE("an invalid UTF-8 key in an error is printed as ASCII") {
  auto p = check("{\"k\xff\":{\"x\":1e999}}");
  REQUIRE(p);
  CHECK(p->field == "");
  p = check("{\"k\":{\"\xe2\x82\":1}}");
  REQUIRE(p);
  CHECK(p->field == "k");
}

TEST_CASE("plain syntax errors keep the parser's message") {
  auto p = check(R"({"a":)");
  REQUIRE(p);
  CHECK(p->field == "");
  CHECK(p->message.starts_with("malformed JSON: "));
  p = check(R"({"a":01})");
  REQUIRE(p);
  CHECK(p->message.starts_with("malformed JSON: "));
}
