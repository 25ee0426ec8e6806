#include "core/crypto.hpp"

#include <memory>
#include <stdexcept>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace hookd::crypto {

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return out;
}

std::string random_id() {
  static constexpr char hex[] = "0123456789abcdef";
  auto bytes = random_bytes(12);
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 0xf]);
  }
  return out;
}

std::string random_token(std::size_t n) {
  auto b64 = base64_encode(random_bytes(n));
  std::string out;
  for (char c : b64) {
    if (c == '+') out.push_back('-');
    else if (c == '/') out.push_back('_');
    else if (c != '=') out.push_back(c);
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(n);
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts padding as zero bytes; drop them.
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string sha256(std::string_view data) {
  std::string out(SHA256_DIGEST_LENGTH, '\0');
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string sha256_hex(std::string_view data) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : sha256(data)) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 0xf]);
  }
  return out;
}

namespace {
std::string hmac(const EVP_MD* md, std::string_view key, std::string_view message) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(md, key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), buf, &len);
  return std::string(reinterpret_cast<char*>(buf), len);
}

struct ctx_free {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using ctx_ptr = std::unique_ptr<EVP_CIPHER_CTX, ctx_free>;
constexpr std::size_t nonce_len = 12;
constexpr std::size_t tag_len = 16;
constexpr std::string_view prefix = "v1:";
}  // namespace

std::string hmac_sha1(std::string_view key, std::string_view message) {
  return hmac(EVP_sha1(), key, message);
}
std::string hmac_sha256(std::string_view key, std::string_view message) {
  return hmac(EVP_sha256(), key, message);
}

cipher::cipher(std::string key) : key_(std::move(key)) {
  if (key_.size() != 32) throw std::invalid_argument("encryption key must be 32 bytes");
}

std::string cipher::seal(std::string_view plaintext) const {
  auto nonce = random_bytes(nonce_len);
  ctx_ptr ctx(EVP_CIPHER_CTX_new());
  std::string out = nonce;
  out.resize(nonce_len + plaintext.size() + tag_len);
  auto* dst = reinterpret_cast<unsigned char*>(out.data()) + nonce_len;
  int len = 0;
  EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                     reinterpret_cast<const unsigned char*>(key_.data()),
                     reinterpret_cast<const unsigned char*>(nonce.data()));
  EVP_EncryptUpdate(ctx.get(), dst, &len, reinterpret_cast<const unsigned char*>(plaintext.data()),
                    static_cast<int>(plaintext.size()));
  int fin = 0;
  EVP_EncryptFinal_ex(ctx.get(), dst + len, &fin);
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, tag_len, dst + plaintext.size());
  return std::string(prefix) + base64_encode(out);
}

std::optional<std::string> cipher::open(std::string_view sealed) const {
  if (!sealed.starts_with(prefix)) return std::nullopt;
  auto raw = base64_decode(sealed.substr(prefix.size()));
  if (!raw || raw->size() < nonce_len + tag_len) return std::nullopt;
  std::size_t n = raw->size() - nonce_len - tag_len;
  auto* src = reinterpret_cast<unsigned char*>(raw->data());
  std::string out(n, '\0');
  ctx_ptr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                     reinterpret_cast<const unsigned char*>(key_.data()), src);
  EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                    src + nonce_len, static_cast<int>(n));
  EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, tag_len, src + nonce_len + n);
  int fin = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &fin) != 1)
    return std::nullopt;
  return out;
}

}  // namespace hookd::crypto
