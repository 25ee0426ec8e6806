#include <doctest/doctest.h>

#include "core/crypto.hpp"

using namespace hookd;

TEST_CASE("base64 round-trips and rejects garbage") {
  CHECK(crypto::base64_encode("hello") == "aGVsbG8=");
  CHECK(crypto::base64_decode("aGVsbG8=") == "hello");
  CHECK(crypto::base64_decode("aGVsbG8") == std::nullopt);
  CHECK(crypto::base64_decode("a*==") == std::nullopt);
}

TEST_CASE("HMAC matches the Standard Webhooks test vector") {
  auto key = crypto::base64_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  REQUIRE(key);
  auto sig = crypto::hmac_sha256(*key, "msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{\"test\": 2432232314}");
  CHECK(crypto::base64_encode(sig) == "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST_CASE("sha256 hex") {
  CHECK(crypto::sha256_hex("abc") ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("AES-256-GCM seals and detects tampering or a wrong key") {
  crypto::cipher c(std::string(32, 'k'));
  auto sealed = c.seal("the secret");
  CHECK(sealed.find("the secret") == std::string::npos);
  CHECK(c.open(sealed) == "the secret");
  CHECK(c.seal("the secret") != sealed);  // fresh nonce each time
  auto tampered = sealed;
  tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
  CHECK(c.open(tampered) == std::nullopt);
  crypto::cipher other(std::string(32, 'x'));
  CHECK(other.open(sealed) == std::nullopt);
  CHECK_THROWS(crypto::cipher("short"));
}

TEST_CASE("ids are opaque and distinct") {
  auto a = crypto::random_id(), b = crypto::random_id();
  CHECK(a.size() == 24);
  CHECK(a != b);
}
