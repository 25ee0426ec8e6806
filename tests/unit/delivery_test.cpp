#include <doctest/doctest.h>

#include "core/crypto.hpp"
#include "core/json.hpp"
#include "delivery/batch.hpp"
#include "delivery/signing.hpp"

using namespace hookd;
using namespace hookd::delivery;

TEST_CASE("Standard Webhooks signature: the published test vector") {
  CHECK(standard_signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek",
                           1614265330, R"({"test": 2432232314})") ==
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST_CASE("the body embeds data verbatim and sig covers data + nonce") {
  std::string data = R"([{"id":"1","name":"Ada"}])";
  auto body = build_body(data, R"({"id":"w"})", "VIRTUAL", "nonce1", "whsec_secret");
  CHECK(body.starts_with(R"({"data":[{"id":"1","name":"Ada"}],"webhook":{"id":"w"},"nonce":"nonce1","sig":")"));
  json::document doc;
  REQUIRE_FALSE(json::document::parse(body, doc));
  std::string_view sig = doc.root()["sig"].get_string().value_unsafe();
  std::string_view sig256 = doc.root()["sig256"].get_string().value_unsafe();
  CHECK(sig == crypto::base64_encode(crypto::hmac_sha1("whsec_secret", data + "nonce1")));
  CHECK(sig256 == crypto::base64_encode(crypto::hmac_sha256("whsec_secret", data + "nonce1")));
  CHECK(std::string_view(doc.root()["type"].get_string().value_unsafe()) == "VIRTUAL");
}

TEST_CASE("a secret that is not whsec_ base64 signs with its own bytes") {
  CHECK(standard_key("plain-secret") == "plain-secret");
  CHECK(standard_key("whsec_aGVsbG8=") == "hello");
}

namespace {
std::vector<log_entry> log(std::initializer_list<std::tuple<int, const char*, const char*, const char*>> rows) {
  std::vector<log_entry> out;
  for (auto [seq, id, kind, record] : rows) out.push_back({seq, id, kind, record});
  return out;
}
}  // namespace

TEST_CASE("a batch takes the webhook's event, coalesced to the latest state") {
  auto entries = log({{1, "a", "created", R"({"id":"a","v":1,"raw":{"x":1}})"},
                      {2, "b", "updated", R"({"id":"b","v":1})"},
                      {3, "a", "updated", R"({"id":"a","v":2,"raw":{"x":2}})"},
                      {4, "c", "created", R"({"id":"c","v":1})"}});
  auto b = select_batch(entries, "created", {}, "", 100);
  CHECK(b.count == 2);
  CHECK(b.data == R"([{"id":"a","v":2},{"id":"c","v":1}])");
  CHECK(b.seq_to == 4);
  auto u = select_batch(entries, "updated", {}, "", 100);
  CHECK(u.data == R"([{"id":"b","v":1},{"id":"a","v":2}])");
  auto d = select_batch(entries, "deleted", {}, "", 100);
  CHECK(d.count == 0);
  CHECK(d.seq_to == 4);  // nothing for this webhook: the cursor may skip them
}

TEST_CASE("page_max_limit ends the window; the rest waits for the next delivery") {
  auto entries = log({{1, "a", "created", R"({"id":"a"})"},
                      {2, "b", "created", R"({"id":"b"})"},
                      {3, "c", "created", R"({"id":"c"})"}});
  auto b = select_batch(entries, "created", {}, "", 2);
  CHECK(b.count == 2);
  CHECK(b.seq_to == 2);
  std::vector<log_entry> rest(entries.begin() + 2, entries.end());
  auto next = select_batch(rest, "created", {}, "", 2);
  CHECK(next.data == R"([{"id":"c"}])");
}

TEST_CASE("projection keeps id and the named fields; raw only when asked") {
  std::string r = R"({"id":"1","name":"Ada","emails":[],"raw":{"n":"Ada"}})";
  CHECK(project(r, "") == R"({"id":"1","name":"Ada","emails":[]})");
  CHECK(project(r, "name") == R"({"id":"1","name":"Ada"})");
  CHECK(project(r, "name, raw") == R"({"id":"1","name":"Ada","raw":{"n":"Ada"}})");
}

TEST_CASE("client-side filters compare top-level values") {
  CHECK(matches_filters(R"({"id":"1","status":"open","n":3})", {{"status", "open"}}));
  CHECK(matches_filters(R"({"id":"1","status":"open","n":3})", {{"n", "3"}}));
  CHECK_FALSE(matches_filters(R"({"id":"1","status":"closed"})", {{"status", "open"}}));
  CHECK_FALSE(matches_filters(R"({"id":"1"})", {{"status", "open"}}));
}
