#include "delivery/signing.hpp"

#include <fmt/format.h>

#include "core/crypto.hpp"
#include "core/json.hpp"

namespace hookd::delivery {

std::string unified_sig(std::string_view secret, std::string_view data_array, std::string_view nonce) {
  return crypto::base64_encode(crypto::hmac_sha1(secret, std::string(data_array) + std::string(nonce)));
}

std::string unified_sig256(std::string_view secret, std::string_view data_array,
                           std::string_view nonce) {
  return crypto::base64_encode(
      crypto::hmac_sha256(secret, std::string(data_array) + std::string(nonce)));
}

std::string build_body(std::string_view data_array, std::string_view webhook_json,
                       std::string_view type, std::string_view nonce, std::string_view secret) {
  std::string body = "{\"data\":";
  body += data_array;
  body += ",\"webhook\":";
  body += webhook_json;
  body += ",\"nonce\":";
  json::append_quoted(body, nonce);
  body += ",\"sig\":";
  json::append_quoted(body, unified_sig(secret, data_array, nonce));
  body += ",\"sig256\":";
  json::append_quoted(body, unified_sig256(secret, data_array, nonce));
  body += ",\"type\":";
  json::append_quoted(body, type);
  body += "}";
  return body;
}

std::string standard_key(std::string_view secret) {
  if (secret.starts_with("whsec_"))
    if (auto key = crypto::base64_decode(secret.substr(6))) return *key;
  return std::string(secret);
}

std::string standard_signature(std::string_view secret, std::string_view id, std::int64_t timestamp,
                               std::string_view body) {
  auto message = fmt::format("{}.{}.{}", id, timestamp, body);
  return "v1," + crypto::base64_encode(crypto::hmac_sha256(standard_key(secret), message));
}

}  // namespace hookd::delivery
