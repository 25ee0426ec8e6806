#pragma once
// Outbound HTTP(S) on Boost.Beast, shared by the source poller and delivery.
// TLS 1.2+ with peer and host-name verification against the system trust store (plus an
// optional CA file), SNI, a keep-alive connection pool per origin, connect and total
// timeouts, and a cap on response bodies. Failures are values, never exceptions.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>

namespace hookd::net {

struct client_options {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds total_timeout{30'000};   // whole request: connect, send, receive
  std::size_t max_response_bytes = 16 * 1024 * 1024;  // larger bodies fail with body_too_large
  std::size_t max_idle_per_origin = 8;                // kept-alive connections per origin
  std::chrono::seconds idle_timeout{30};              // idle pooled connections are closed after
  std::string ca_file;                                // extra trusted CAs (PEM), besides the system store
  bool verify_tls = true;                             // false only for explicit test set-ups
  bool accept_gzip = true;                            // send accept-encoding: gzip and inflate
  // true: a body over max_response_bytes is cut there (the connection is then closed) and the
  // response kept, for callers that only need the status (deliveries), so a receiver cannot make
  // hookd buffer or fail on an endless answer. false: such a response fails with body_too_large.
  bool truncate_large_bodies = false;
  // Called with every resolved address before connecting; false refuses it (SSRF guard).
  std::function<bool(const boost::asio::ip::address&)> allow_address;
  // Called with the URL's (canonical) host before resolving; false refuses it (names such as
  // localhost or metadata.google.internal, whatever the resolver would answer for them).
  std::function<bool(std::string_view)> allow_host;
};

struct header {
  std::string name;   // lower case
  std::string value;
};

struct client_request {
  std::string method = "GET";
  std::string url;  // absolute http:// or https:// URL
  std::vector<header> headers;
  std::string body;
  std::optional<std::chrono::milliseconds> timeout;  // overrides total_timeout
};

struct client_response {
  unsigned status = 0;
  std::vector<header> headers;  // names lower case, in order received
  std::string body;             // inflated when the server sent gzip
  std::chrono::microseconds latency{};

  // The first header of that name (lower case), or nullopt.
  std::optional<std::string> header_value(std::string_view name) const;
};

enum class client_error_kind {
  invalid_url,      // not an absolute http(s) URL
  resolve_failed,   // DNS
  address_refused,  // allow_address said no for every address
  connect_failed,
  tls_failed,       // handshake or certificate/host-name verification
  timeout,
  io_failed,        // connection reset, malformed response...
  body_too_large,
};

struct client_error {
  client_error_kind kind;
  std::string message;  // e.g. "TLS handshake with api.example.com:443 failed: certificate verify failed"
};

// Either a response (any status) or an error.
struct client_result {
  std::optional<client_response> response;
  std::optional<client_error> error;
  explicit operator bool() const { return response.has_value(); }
};

class http_client {
public:
  http_client(boost::asio::any_io_executor ex, client_options options);
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  // Safe to call concurrently from coroutines on the client's executor (or any strand of it).
  boost::asio::awaitable<client_result> send(client_request req);

  // Closes every pooled connection.
  void close_idle();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// An outbound URL as hookd sends to it (Boost.URL's RFC 3986 parser underneath). The host is
// canonical: an IP literal in any spelling the resolver accepts (2130706433, 0177.0.0.1,
// 0x7f.1, 127.1, [::ffff:7f00:1]) becomes the address it means, so the address policy judges
// what a connect would reach; names are lower case. Credentials, percent-encoded hosts, zone
// ids and schemes other than http(s) are refused.
struct parsed_url {
  bool tls = false;
  std::string host;  // without brackets for IPv6
  std::string port;  // "80"/"443" when absent
  std::string target;  // path + query, at least "/"
};
std::optional<parsed_url> parse_url(std::string_view url);
// Why parse_url refuses `url` ("the URL scheme must be http or https"), or nullopt.
std::optional<std::string> url_problem(std::string_view url);

}  // namespace hookd::net
