#pragma once
// What a subscriber receives: the payload body and its signatures (DESIGN §1.2).
//   body = {"data":[...],"webhook":{...},"nonce":"...","sig":"...","sig256":"...","type":"..."}
//   sig    = base64(HMAC-SHA1(workspace secret as UTF-8, <data array bytes> + nonce))
//   sig256 = base64(HMAC-SHA256(workspace secret as UTF-8, <data array bytes> + nonce))
// and the Standard Webhooks headers webhook-id, webhook-timestamp, webhook-signature
//   v1,base64(HMAC-SHA256(base64-decoded whsec_ secret, "<id>.<timestamp>.<body>")).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hookd::delivery {

// The bytes of the payload, with data (a JSON array text) and webhook (a JSON object text)
// embedded as given, so `sig` covers exactly the data bytes that are sent.
std::string build_body(std::string_view data_array, std::string_view webhook_json,
                       std::string_view type, std::string_view nonce, std::string_view secret);

std::string unified_sig(std::string_view secret, std::string_view data_array, std::string_view nonce);
std::string unified_sig256(std::string_view secret, std::string_view data_array,
                           std::string_view nonce);

// The Standard Webhooks signing key of a workspace secret: the base64-decoded part of a
// "whsec_..." secret, else the secret's own bytes.
std::string standard_key(std::string_view secret);
std::string standard_signature(std::string_view secret, std::string_view id,
                               std::int64_t timestamp, std::string_view body);

}  // namespace hookd::delivery
