#include "net/http_client.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <mutex>
#include <stdexcept>

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace hookd::net {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using error_code = boost::system::error_code;
using wire_request = http::request<http::string_body>;
using tcp_stream = beast::tcp_stream;
using tls_stream = beast::ssl_stream<tcp_stream>;

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);
// Large enough for real APIs' headers (long Link and Set-Cookie lines), small enough to bound
// memory.
constexpr std::uint32_t response_header_limit = 64 * 1024;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool is_ip_literal(const std::string& host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// ---------------------------------------------------------------------------------------------
// URLs

struct url_or_reason {
  std::optional<parsed_url> url;
  std::string reason;  // why it was refused
};

url_or_reason refuse(std::string reason) { return {std::nullopt, std::move(reason)}; }

// Characters RFC 3986 forbids after the authority that real APIs still put in their next-page
// URLs (created[gte]=..., UTF-8 in a cursor): percent-encoded, as curl and browsers send them.
// The authority is left alone: anything odd there is refused by the parser.
std::string encode_loose_tail(std::string_view text) {
  auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return std::string(text);
  auto tail_start = text.find_first_of("/?#", scheme_end + 3);
  if (tail_start == std::string_view::npos) return std::string(text);
  static constexpr std::string_view allowed = "-._~!$&'()*+,;=:@/?#%";
  std::string out(text.substr(0, tail_start));
  for (unsigned char c : text.substr(tail_start)) {
    bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 allowed.find(static_cast<char>(c)) != std::string_view::npos;
    if (plain) out.push_back(static_cast<char>(c));
    else out += fmt::format("%{:02X}", c);
  }
  return out;
}

// WHATWG URL "ends in a number": a host whose last label is decimal or 0x-hex is an IPv4
// address in one of inet_aton's spellings (2130706433, 0177.0.0.1, 0x7f.1, 127.1), which
// getaddrinfo would also accept.
bool ends_in_number(std::string_view host) {
  if (host.ends_with(".")) host.remove_suffix(1);
  auto last = host.substr(host.rfind('.') == std::string_view::npos ? 0 : host.rfind('.') + 1);
  if (last.empty()) return false;
  auto digits = [](std::string_view s, auto pred) { return std::all_of(s.begin(), s.end(), pred); };
  if (digits(last, [](char c) { return c >= '0' && c <= '9'; })) return true;
  return (last.starts_with("0x") || last.starts_with("0X")) &&
         digits(last.substr(2), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// The address a numeric host means, as the resolver reads it; nullopt when it is not one.
std::optional<std::string> numeric_host(std::string host) {
  if (host.ends_with(".")) host.pop_back();
  in_addr a{};
  if (::inet_aton(host.c_str(), &a) == 0) return std::nullopt;
  return asio::ip::address_v4(ntohl(a.s_addr)).to_string();
}

// The host in its canonical form: IP literals as the address they are (IPv6 without brackets),
// names in lower case.
std::optional<std::string> canonical_host(const boost::urls::url_view& u, std::string& reason) {
  using boost::urls::host_type;
  switch (u.host_type()) {
    case host_type::ipv4:
      return asio::ip::address_v4(u.host_ipv4_address().to_bytes()).to_string();
    case host_type::ipv6:
      return asio::ip::address_v6(u.host_ipv6_address().to_bytes()).to_string();
    case host_type::name: break;
    case host_type::none:
      reason = "the URL has no host";
      return std::nullopt;
    default:  // IPvFuture
      reason = "the URL host is not valid";
      return std::nullopt;
  }
  std::string_view encoded = u.encoded_host();
  // A percent-encoded name would be decoded by nobody but us: refuse the ambiguity.
  if (encoded.find('%') != std::string_view::npos) {
    reason = "the URL host is percent-encoded";
    return std::nullopt;
  }
  if (encoded.empty() || encoded == ".") {
    reason = "the URL has no host";
    return std::nullopt;
  }
  auto name_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  };
  if (!std::all_of(encoded.begin(), encoded.end(), name_char)) {
    reason = "the URL host is not valid";
    return std::nullopt;
  }
  if (ends_in_number(encoded)) {
    auto address = numeric_host(std::string(encoded));
    if (!address) reason = "the URL host ends in a number but is not a valid IPv4 address";
    return address;
  }
  return lower(encoded);
}

// An empty port means the scheme's default (RFC 3986 3.2.3).
std::optional<std::string> normalise_port(std::string_view port, bool tls) {
  if (port.empty()) return std::string(tls ? "443" : "80");
  if (port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  int value = std::stoi(std::string(port));
  if (value < 1 || value > 65535) return std::nullopt;
  return std::to_string(value);
}

// Boost.URL parses (RFC 3986); hookd adds what an outbound request needs: http(s) only, no
// credentials, a host in its canonical form, a port, the target to send.
url_or_reason parse_url_detailed(std::string_view text) {
  for (unsigned char c : text)
    if (c <= 0x20 || c == 0x7f) return refuse("the URL contains a space or a control character");
  auto encoded = encode_loose_tail(text);
  auto parsed = boost::urls::parse_uri(encoded);
  if (!parsed) {
    if (text.find("://") == std::string_view::npos) return refuse("the URL is not absolute (no scheme://)");
    return refuse("the URL is not valid");
  }
  const auto& u = *parsed;
  auto scheme = u.scheme_id();
  if (scheme != boost::urls::scheme::http && scheme != boost::urls::scheme::https)
    return refuse("the URL scheme must be http or https");
  if (!u.has_authority()) return refuse("the URL is not absolute (no scheme://)");
  // With an authority the path is empty or starts with "/" (RFC 3986 3.3). Boost.URL 1.81 ends
  // an IPv4 host at its fourth number and puts the rest in the path ("http://127.0.0.1.nip.io/"
  // has host 127.0.0.1, path ".nip.io/"): such a host is refused rather than misread.
  std::string_view path = u.encoded_path();
  if (!path.empty() && path.front() != '/') return refuse("the URL host is not valid");
  // Credentials in URLs leak into logs and invite host confusion (http://good@evil/).
  if (u.has_userinfo()) return refuse("credentials in the URL are not supported");
  parsed_url url;
  url.tls = scheme == boost::urls::scheme::https;
  std::string reason;
  auto host = canonical_host(u, reason);
  if (!host) return refuse(reason);
  url.host = std::move(*host);
  auto port = normalise_port(u.has_port() ? std::string_view(u.port()) : std::string_view(), url.tls);
  if (!port) return refuse("the URL port is not valid");
  url.port = std::move(*port);
  std::string_view target = u.encoded_target();  // path and query; fragments are never sent
  url.target = target.empty() || target.front() != '/' ? "/" + std::string(target) : std::string(target);
  return {std::move(url), {}};
}

// "host:port" for messages and the host header; IPv6 in brackets.
std::string authority_of(const parsed_url& url) {
  if (url.host.find(':') != std::string::npos) return fmt::format("[{}]:{}", url.host, url.port);
  return fmt::format("{}:{}", url.host, url.port);
}

std::string host_header(const parsed_url& url) {
  bool default_port = url.port == (url.tls ? "443" : "80");
  if (!default_port) return authority_of(url);
  return url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
}

// ---------------------------------------------------------------------------------------------
// Requests

// What one send() needs on whichever strand it runs.
struct request_context {
  parsed_url url;
  std::string authority;
  std::string origin;  // pool key: scheme://host:port
  clock_type::time_point total_deadline;
  std::chrono::milliseconds total_budget{};
  std::size_t max_body = 0;
  bool truncate_body = false;  // client_options::truncate_large_bodies
};

bool is_tchar(char c) {
  static constexpr std::string_view specials = "!#$%&'*+-.^_`|~";
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         specials.find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// CR, LF or NUL in a value would let it smuggle extra headers.
bool is_safe_value(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

bool caller_sets(const client_request& req, std::string_view name) {
  return std::any_of(req.headers.begin(), req.headers.end(),
                     [&](const header& h) { return beast::iequals(h.name, name); });
}

// A malformed method or header is a permanent caller error: reported as invalid_url (the only
// non-retryable request-shape kind the interface has).
std::optional<client_error> build_request(const client_request& req, const parsed_url& url,
                                          const client_options& options, wire_request& out) {
  if (!is_token(req.method))
    return client_error{client_error_kind::invalid_url,
                        fmt::format("'{}' is not a valid HTTP method", req.method)};
  for (const auto& h : req.headers)
    if (!is_token(h.name) || !is_safe_value(h.value))
      return client_error{client_error_kind::invalid_url,
                          fmt::format("header '{}' has an invalid name or value", h.name)};
  out.version(11);
  out.method_string(req.method);
  out.target(url.target);
  if (!caller_sets(req, "host")) out.set(http::field::host, host_header(url));
  if (!caller_sets(req, "user-agent")) out.set(http::field::user_agent, "hookd");
  if (options.accept_gzip && !caller_sets(req, "accept-encoding"))
    out.set(http::field::accept_encoding, "gzip");
  for (const auto& h : req.headers) {
    // Framing comes from the body, never from the caller: a mismatch would desynchronise the
    // connection.
    if (beast::iequals(h.name, "content-length") || beast::iequals(h.name, "transfer-encoding"))
      continue;
    out.insert(h.name, h.value);
  }
  out.body() = req.body;
  out.prepare_payload();
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Errors

client_error make_error(client_error_kind kind, std::string message) {
  return {kind, std::move(message)};
}

client_error timeout_error(const request_context& ctx, std::string_view phase,
                           std::string_view budget_name, std::chrono::milliseconds budget) {
  return make_error(client_error_kind::timeout,
                    fmt::format("request to {} timed out while {} ({} timeout {} ms)",
                                ctx.authority, phase, budget_name, budget.count()));
}

client_error total_timeout_error(const request_context& ctx, std::string_view phase) {
  return timeout_error(ctx, phase, "total", ctx.total_budget);
}

// ---------------------------------------------------------------------------------------------
// Connections

struct connection {
  std::string origin;
  std::shared_ptr<ssl::context> tls_context;  // declared before the stream, so it outlives it
  std::unique_ptr<tls_stream> tls;
  std::unique_ptr<tcp_stream> plain;
  beast::flat_buffer buffer;
  clock_type::time_point idle_since{};
  bool reused = false;

  tcp_stream& lowest_layer() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  // The connection's own strand: every operation on it runs there.
  asio::any_io_executor executor() { return lowest_layer().get_executor(); }
};

// The outcome of one try on one connection; the connection comes back only when reusable.
struct attempt {
  std::unique_ptr<connection> conn;
  std::optional<client_response> response;
  std::optional<client_error> error;
  bool retryable = false;  // a reused connection failed before any response byte
};

// An idle kept-alive socket must have nothing to read: EOF means the server closed it, data means
// it is out of sync. Peeking avoids sending a request into a connection that is already dead.
bool idle_socket_is_clean(connection& conn) {
  char byte;
  auto n = ::recv(conn.lowest_layer().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// ---------------------------------------------------------------------------------------------
// Resolving with a deadline

struct resolve_outcome {
  error_code ec;
  tcp::resolver::results_type results;
  bool timed_out = false;
};

// getaddrinfo cannot be interrupted, so the lookup runs detached and owns its own state; on timeout
// the coroutine stops waiting for it and its late result is dropped.
asio::awaitable<resolve_outcome> resolve(asio::any_io_executor ex, const std::string& host,
                                         const std::string& port, clock_type::time_point deadline) {
  struct state {
    explicit state(const asio::any_io_executor& ex) : resolver(ex), done(ex) {}
    tcp::resolver resolver;
    asio::steady_timer done;
    std::optional<resolve_outcome> outcome;
  };
  auto s = std::make_shared<state>(ex);
  s->done.expires_at(deadline);
  auto on_resolved = [s](error_code ec, tcp::resolver::results_type results) {
    s->outcome = resolve_outcome{ec, std::move(results), false};
    s->done.cancel();
  };
  s->resolver.async_resolve(host, port, tcp::resolver::numeric_service, on_resolved);
  co_await s->done.async_wait(tuple_awaitable);
  if (s->outcome) co_return *s->outcome;
  s->resolver.cancel();
  co_return resolve_outcome{asio::error::timed_out, {}, true};
}

// ---------------------------------------------------------------------------------------------
// One request/response exchange

struct exchange_outcome {
  std::optional<client_response> response;
  std::optional<client_error> error;
  bool got_response_bytes = false;
  bool reusable = false;
};

client_error read_error(const request_context& ctx, error_code ec, bool got_some) {
  std::string_view phase = got_some ? "reading the response" : "waiting for the response";
  if (ec == beast::error::timeout) return total_timeout_error(ctx, phase);
  if (ec == http::error::body_limit)
    return make_error(
        client_error_kind::body_too_large,
        fmt::format("the response body from {} exceeds {} bytes", ctx.authority, ctx.max_body));
  if (ec == http::error::header_limit)
    return make_error(client_error_kind::io_failed,
                      fmt::format("the response headers from {} exceed {} bytes", ctx.authority,
                                  response_header_limit));
  return make_error(client_error_kind::io_failed, fmt::format("request to {} failed while {}: {}",
                                                              ctx.authority, phase, ec.message()));
}

client_response to_client_response(http::response<http::string_body>& msg) {
  client_response res;
  res.status = msg.result_int();
  for (const auto& field : msg)
    res.headers.push_back({lower(field.name_string()), std::string(field.value())});
  res.body = std::move(msg.body());
  return res;
}

// 1xx responses (other than 101) precede the real one and are skipped (RFC 9110 15.2).
bool is_interim(unsigned status) { return status >= 100 && status < 200 && status != 101; }

template <class Stream>
asio::awaitable<exchange_outcome> write_and_read(Stream& stream, connection& conn,
                                                 const wire_request& req,
                                                 const request_context& ctx) {
  exchange_outcome out;
  conn.lowest_layer().expires_at(ctx.total_deadline);
  auto [write_ec, written] = co_await http::async_write(stream, req, tuple_awaitable);
  if (write_ec) {
    out.error = write_ec == beast::error::timeout
                    ? total_timeout_error(ctx, "sending the request")
                    : make_error(client_error_kind::io_failed,
                                 fmt::format("request to {} failed while sending: {}",
                                             ctx.authority, write_ec.message()));
    co_return out;
  }
  std::optional<http::response_parser<http::string_body>> parser;
  for (;;) {
    parser.emplace();
    parser->body_limit(ctx.max_body);
    parser->header_limit(response_header_limit);
    if (req.method() == http::verb::head) parser->skip(true);
    auto [read_ec, read] = co_await http::async_read(stream, conn.buffer, *parser, tuple_awaitable);
    out.got_response_bytes = out.got_response_bytes || parser->got_some() || conn.buffer.size() > 0;
    // A TLS peer that closes without close_notify legitimately ends a close-delimited body.
    if (read_ec == ssl::error::stream_truncated && parser->is_header_done() && parser->need_eof())
      parser->put_eof(read_ec);
    if (read_ec == http::error::body_limit && ctx.truncate_body && parser->is_header_done() &&
        !is_interim(parser->get().result_int())) {
      // The status is all the caller needs; what the body holds so far stays, the rest is not read.
      out.response = to_client_response(parser->get());
      co_return out;  // not reusable: the rest of the body is still on the wire
    }
    if (read_ec) {
      out.error = read_error(ctx, read_ec, parser->got_some());
      co_return out;
    }
    if (!is_interim(parser->get().result_int())) break;
  }
  auto& msg = parser->get();
  out.reusable = parser->is_done() && msg.keep_alive() && !parser->upgrade() &&
                 msg.result_int() != 101 && conn.buffer.size() == 0;
  out.response = to_client_response(msg);
  co_return out;
}

// Runs on the connection's strand.
asio::awaitable<attempt> exchange(std::unique_ptr<connection> conn,
                                  std::shared_ptr<const wire_request> req, request_context ctx) {
  exchange_outcome outcome;
  if (conn->tls)
    outcome = co_await write_and_read(*conn->tls, *conn, *req, ctx);
  else
    outcome = co_await write_and_read(*conn->plain, *conn, *req, ctx);
  attempt out;
  out.response = std::move(outcome.response);
  out.error = std::move(outcome.error);
  out.retryable = conn->reused && out.error && !outcome.got_response_bytes &&
                  out.error->kind != client_error_kind::timeout;
  if (outcome.reusable) out.conn = std::move(conn);
  co_return out;
}

// ---------------------------------------------------------------------------------------------
// TLS

std::shared_ptr<ssl::context> make_tls_context(const client_options& options) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::no_compression);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  if (!options.verify_tls) {
    ctx->set_verify_mode(ssl::verify_none);
    return ctx;
  }
  ctx->set_default_verify_paths();
  if (!options.ca_file.empty()) {
    error_code ec;
    ctx->load_verify_file(options.ca_file, ec);
    if (ec)
      throw std::runtime_error(
          fmt::format("cannot load CA file {}: {}", options.ca_file, ec.message()));
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

// SNI for names only (RFC 6066 forbids IP literals there); the certificate is checked against the
// name, or against its IP SANs for an IP literal, by OpenSSL during the handshake.
bool prepare_tls(tls_stream& stream, const std::string& host, bool verify) {
  SSL* handle = stream.native_handle();
  bool ip = is_ip_literal(host);
  if (!ip && SSL_set_tlsext_host_name(handle, host.c_str()) != 1) return false;
  if (!verify) return true;
  if (ip) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(handle), host.c_str()) == 1;
  SSL_set_hostflags(handle, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  return SSL_set1_host(handle, host.c_str()) == 1;
}

std::string handshake_failure(tls_stream& stream, error_code ec) {
  auto verify = SSL_get_verify_result(stream.native_handle());
  if (verify == X509_V_OK) return ec.message();
  return fmt::format("{}: {}", ec.message(), X509_verify_cert_error_string(verify));
}

// ---------------------------------------------------------------------------------------------
// gzip

struct inflate_guard {
  z_stream& zs;
  ~inflate_guard() { inflateEnd(&zs); }
};

bool is_gzip(const client_response& res) {
  auto encoding = res.header_value("content-encoding");
  if (!encoding) return false;
  auto value = lower(*encoding);
  value.erase(0, value.find_first_not_of(" \t"));
  value.erase(value.find_last_not_of(" \t") + 1);
  return value == "gzip" || value == "x-gzip";
}

// Inflates in place, refusing output over `limit` (a small gzip body can expand enormously).
std::optional<client_error> gunzip(client_response& res, const request_context& ctx) {
  if (res.body.empty()) return std::nullopt;  // HEAD, 204, 304
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
    return make_error(client_error_kind::io_failed, "cannot initialise zlib");
  inflate_guard guard{zs};
  if (res.body.size() > UINT_MAX)
    return make_error(client_error_kind::body_too_large, "gzip body too large to inflate");
  zs.next_in = reinterpret_cast<Bytef*>(res.body.data());
  zs.avail_in = static_cast<uInt>(res.body.size());
  std::string out;
  std::array<char, 16384> chunk;
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(chunk.data());
    zs.avail_out = static_cast<uInt>(chunk.size());
    int rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END)
      return make_error(
          client_error_kind::io_failed,
          fmt::format("the gzip response body from {} is corrupt or truncated", ctx.authority));
    std::size_t produced = chunk.size() - zs.avail_out;
    if (out.size() + produced > ctx.max_body)
      return make_error(client_error_kind::body_too_large,
                        fmt::format("the inflated response body from {} exceeds {} bytes",
                                    ctx.authority, ctx.max_body));
    out.append(chunk.data(), produced);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      inflateReset(&zs);  // concatenated gzip members (RFC 1952 2.2)
    }
  }
  res.body = std::move(out);
  // Like Go's transport: the framing headers described the compressed bytes, not this body.
  std::erase_if(res.headers, [](const header& h) {
    return h.name == "content-encoding" || h.name == "content-length";
  });
  return std::nullopt;
}

}  // namespace

// -------------------------------------------------------------------------------------------------

std::optional<std::string> client_response::header_value(std::string_view name) const {
  for (const auto& h : headers)
    if (beast::iequals(h.name, name)) return h.value;
  return std::nullopt;
}

std::optional<parsed_url> parse_url(std::string_view url) { return parse_url_detailed(url).url; }

std::optional<std::string> url_problem(std::string_view url) {
  auto parsed = parse_url_detailed(url);
  if (parsed.url) return std::nullopt;
  return std::move(parsed.reason);
}

struct http_client::impl {
  impl(asio::any_io_executor ex, client_options options)
      : executor_(std::move(ex)),
        options_(std::move(options)),
        tls_context_(make_tls_context(options_)) {}

  asio::awaitable<client_result> send(client_request req);
  std::optional<client_error> prepare(const client_request& req, clock_type::time_point started,
                                      request_context& ctx, wire_request& wire);
  asio::awaitable<attempt> attempts(std::shared_ptr<const wire_request> wire, request_context ctx);
  asio::awaitable<attempt> fresh_attempt(std::shared_ptr<const wire_request> req,
                                         request_context ctx);
  asio::awaitable<std::optional<client_error>> open(connection& conn,
                                                    const tcp::resolver::results_type& results,
                                                    const request_context& ctx,
                                                    clock_type::time_point connect_deadline);
  std::optional<client_error> connect_timeout(const request_context& ctx, std::string_view phase,
                                              clock_type::time_point connect_deadline) const;
  std::unique_ptr<connection> take_idle(const std::string& origin);
  void put_idle(std::unique_ptr<connection> conn);
  void close_idle();

  asio::any_io_executor executor_;
  client_options options_;
  std::shared_ptr<ssl::context> tls_context_;
  std::mutex mutex_;  // guards idle_ and last_sweep_; never held across a co_await
  std::map<std::string, std::vector<std::unique_ptr<connection>>> idle_;
  clock_type::time_point last_sweep_{};
};

asio::awaitable<client_result> http_client::impl::send(client_request req) {
  auto started = clock_type::now();
  client_result result;
  request_context ctx;
  auto wire = std::make_shared<wire_request>();
  if (auto bad = prepare(req, started, ctx, *wire)) {
    result.error = std::move(bad);
    co_return result;
  }
  auto outcome = co_await attempts(std::move(wire), ctx);
  if (outcome.conn) put_idle(std::move(outcome.conn));
  if (!outcome.error && options_.accept_gzip && is_gzip(*outcome.response))
    outcome.error = gunzip(*outcome.response, ctx);
  if (outcome.error) {
    result.error = std::move(outcome.error);
    co_return result;
  }
  outcome.response->latency =
      std::chrono::duration_cast<std::chrono::microseconds>(clock_type::now() - started);
  result.response = std::move(outcome.response);
  co_return result;
}

std::optional<client_error> http_client::impl::prepare(const client_request& req,
                                                       clock_type::time_point started,
                                                       request_context& ctx, wire_request& wire) {
  auto parsed = parse_url_detailed(req.url);
  // The URL itself is not echoed: its query or userinfo may hold secrets.
  if (!parsed.url)
    return make_error(client_error_kind::invalid_url, "invalid URL: " + parsed.reason);
  ctx.url = std::move(*parsed.url);
  ctx.authority = authority_of(ctx.url);
  ctx.origin = (ctx.url.tls ? "https://" : "http://") + ctx.authority;
  ctx.total_budget = req.timeout.value_or(options_.total_timeout);
  ctx.total_deadline = started + ctx.total_budget;
  ctx.max_body = options_.max_response_bytes;
  ctx.truncate_body = options_.truncate_large_bodies;
  return build_request(req, ctx.url, options_, wire);
}

// A pooled connection if there is one, else (or if it turns out dead) a fresh one.
asio::awaitable<attempt> http_client::impl::attempts(std::shared_ptr<const wire_request> wire,
                                                     request_context ctx) {
  if (auto conn = take_idle(ctx.origin)) {
    auto conn_executor = conn->executor();
    auto reused = co_await asio::co_spawn(conn_executor, exchange(std::move(conn), wire, ctx),
                                          asio::use_awaitable);
    // The server may have closed the kept-alive connection just as we used it: one fresh try.
    if (!reused.retryable) co_return reused;
  }
  auto strand = asio::make_strand(executor_);
  auto fresh = co_await asio::co_spawn(strand, fresh_attempt(std::move(wire), std::move(ctx)),
                                       asio::use_awaitable);
  co_return fresh;
}

// Runs on a new strand, which becomes the new connection's strand.
asio::awaitable<attempt> http_client::impl::fresh_attempt(std::shared_ptr<const wire_request> req,
                                                          request_context ctx) {
  auto ex = co_await asio::this_coro::executor;
  auto connect_deadline =
      std::min(clock_type::now() + options_.connect_timeout, ctx.total_deadline);
  attempt out;
  if (options_.allow_host && !options_.allow_host(ctx.url.host)) {
    out.error = make_error(client_error_kind::address_refused,
                           fmt::format("connections to {} are not allowed", ctx.url.host));
    co_return out;
  }
  auto resolved = co_await resolve(ex, ctx.url.host, ctx.url.port, connect_deadline);
  if (resolved.timed_out) {
    out.error = connect_timeout(ctx, "resolving the host", connect_deadline);
    co_return out;
  }
  if (resolved.ec) {
    out.error =
        make_error(client_error_kind::resolve_failed,
                   fmt::format("cannot resolve {}: {}", ctx.url.host, resolved.ec.message()));
    co_return out;
  }
  auto conn = std::make_unique<connection>();
  conn->origin = ctx.origin;
  if (ctx.url.tls) {
    conn->tls_context = tls_context_;
    conn->tls = std::make_unique<tls_stream>(ex, *tls_context_);
  } else {
    conn->plain = std::make_unique<tcp_stream>(ex);
  }
  out.error = co_await open(*conn, resolved.results, ctx, connect_deadline);
  if (out.error) co_return out;
  auto exchanged = co_await exchange(std::move(conn), std::move(req), std::move(ctx));
  co_return exchanged;
}

std::optional<client_error> http_client::impl::connect_timeout(
    const request_context& ctx, std::string_view phase,
    clock_type::time_point connect_deadline) const {
  if (connect_deadline < ctx.total_deadline)
    return timeout_error(ctx, phase, "connect", options_.connect_timeout);
  return total_timeout_error(ctx, phase);
}

// Connects to the allowed addresses, then shakes hands for https.
asio::awaitable<std::optional<client_error>> http_client::impl::open(
    connection& conn, const tcp::resolver::results_type& results, const request_context& ctx,
    clock_type::time_point connect_deadline) {
  std::vector<tcp::endpoint> allowed;
  std::vector<std::string> allowed_addresses, refused_addresses;
  for (const auto& entry : results) {
    const auto& address = entry.endpoint().address();
    bool ok = !options_.allow_address || options_.allow_address(address);
    if (ok) allowed.push_back(entry.endpoint());
    (ok ? allowed_addresses : refused_addresses).push_back(address.to_string());
  }
  if (allowed.empty())
    co_return make_error(client_error_kind::address_refused,
                         fmt::format("connections to {} are not allowed: it resolves to {}",
                                     ctx.url.host, fmt::join(refused_addresses, ", ")));
  auto& stream = conn.lowest_layer();
  stream.expires_at(connect_deadline);
  auto [connect_ec, endpoint] = co_await stream.async_connect(allowed, tuple_awaitable);
  if (connect_ec == beast::error::timeout)
    co_return connect_timeout(ctx, "connecting", connect_deadline);
  if (connect_ec)
    co_return make_error(client_error_kind::connect_failed,
                         fmt::format("cannot connect to {} ({}): {}", ctx.authority,
                                     fmt::join(allowed_addresses, ", "), connect_ec.message()));
  error_code ignored;
  stream.socket().set_option(tcp::no_delay(true), ignored);  // requests are small: no Nagle delay
  if (!conn.tls) co_return std::nullopt;
  if (!prepare_tls(*conn.tls, ctx.url.host, options_.verify_tls))
    co_return make_error(client_error_kind::tls_failed,
                         fmt::format("cannot set up TLS for {}", ctx.authority));
  stream.expires_at(connect_deadline);
  auto [handshake_ec] =
      co_await conn.tls->async_handshake(ssl::stream_base::client, tuple_awaitable);
  if (handshake_ec == beast::error::timeout)
    co_return connect_timeout(ctx, "in the TLS handshake", connect_deadline);
  if (handshake_ec)
    co_return make_error(client_error_kind::tls_failed,
                         fmt::format("TLS handshake with {} failed: {}", ctx.authority,
                                     handshake_failure(*conn.tls, handshake_ec)));
  co_return std::nullopt;
}

// The most recently used idle connection that is still clean; stale ones are dropped on the way.
std::unique_ptr<connection> http_client::impl::take_idle(const std::string& origin) {
  for (;;) {
    std::unique_ptr<connection> conn;
    {
      std::lock_guard lock(mutex_);
      auto it = idle_.find(origin);
      if (it == idle_.end() || it->second.empty()) return nullptr;
      conn = std::move(it->second.back());
      it->second.pop_back();
      if (it->second.empty()) idle_.erase(it);
    }
    bool fresh = clock_type::now() - conn->idle_since <= options_.idle_timeout;
    if (fresh && idle_socket_is_clean(*conn)) {
      conn->reused = true;
      return conn;
    }
    // conn closes here, outside the lock
  }
}

void http_client::impl::put_idle(std::unique_ptr<connection> conn) {
  auto now = clock_type::now();
  conn->idle_since = now;
  conn->buffer.shrink_to_fit();  // idle connections should cost a socket, not a read buffer
  std::vector<std::unique_ptr<connection>> closing;  // destroyed after the lock is released
  {
    std::lock_guard lock(mutex_);
    auto& list = idle_[conn->origin];
    list.push_back(std::move(conn));
    while (list.size() > options_.max_idle_per_origin) {  // the oldest go first
      closing.push_back(std::move(list.front()));
      list.erase(list.begin());
    }
    if (list.empty()) idle_.erase(closing.back()->origin);
    // Connections to origins never used again would linger forever: sweep now and then.
    if (now - last_sweep_ >= std::chrono::seconds(1)) {
      last_sweep_ = now;
      for (auto it = idle_.begin(); it != idle_.end();) {
        auto& conns = it->second;
        for (auto& c : conns)
          if (now - c->idle_since > options_.idle_timeout) closing.push_back(std::move(c));
        std::erase(conns, nullptr);
        it = conns.empty() ? idle_.erase(it) : std::next(it);
      }
    }
  }
}

void http_client::impl::close_idle() {
  std::map<std::string, std::vector<std::unique_ptr<connection>>> closing;
  {
    std::lock_guard lock(mutex_);
    closing.swap(idle_);
  }
}

http_client::http_client(asio::any_io_executor ex, client_options options)
    : impl_(std::make_unique<impl>(std::move(ex), std::move(options))) {}

http_client::~http_client() = default;

asio::awaitable<client_result> http_client::send(client_request req) {
  client_result result;
  try {
    result = co_await impl_->send(std::move(req));
  } catch (const std::exception& e) {
    result = client_result{};
    result.error =
        make_error(client_error_kind::io_failed, fmt::format("request failed: {}", e.what()));
  }
  co_return result;
}

void http_client::close_idle() { impl_->close_idle(); }

}  // namespace hookd::net
