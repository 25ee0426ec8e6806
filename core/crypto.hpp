#pragma once
// Thin wrappers over OpenSSL: randomness, hashes, HMAC, base64 and AES-256-GCM.
#include <optional>
#include <string>
#include <string_view>

namespace hookd::crypto {

std::string random_bytes(std::size_t n);
// An opaque identifier: 24 lowercase hex characters (96 random bits).
std::string random_id();
// A random token of n bytes, url-safe base64 without padding.
std::string random_token(std::size_t n = 32);

std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

std::string sha256(std::string_view data);  // raw 32 bytes
std::string sha256_hex(std::string_view data);
std::string hmac_sha1(std::string_view key, std::string_view message);    // raw
std::string hmac_sha256(std::string_view key, std::string_view message);  // raw

// AES-256-GCM with a 32-byte key. seal() returns "v1:" + base64(nonce | ciphertext | tag);
// open() returns nullopt when the text was not produced with this key or was altered.
class cipher {
public:
  explicit cipher(std::string key);  // throws std::invalid_argument unless 32 bytes
  std::string seal(std::string_view plaintext) const;
  std::optional<std::string> open(std::string_view sealed) const;

private:
  std::string key_;
};

}  // namespace hookd::crypto
