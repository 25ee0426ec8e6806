#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "net/http_client.hpp"
#include "test_server.hpp"

using namespace hookd::net;
using namespace hookd::test;
using namespace std::chrono_literals;

namespace {

client_options test_options() {
  client_options o;
  o.connect_timeout = 2s;
  o.total_timeout = 5s;
  return o;
}

// One client on a single-threaded io_context, driven one request at a time.
struct client_fixture {
  explicit client_fixture(client_options o = test_options())
      : client(ioc.get_executor(), std::move(o)) {}

  client_result send(client_request req) {
    std::optional<client_result> out;
    auto on_done = [&out](std::exception_ptr e, client_result r) {
      if (!e) out = std::move(r);
    };
    asio::co_spawn(ioc, client.send(std::move(req)), on_done);
    ioc.restart();
    ioc.run_for(15s);  // bounded even if the client hung
    REQUIRE(out.has_value());
    return std::move(*out);
  }

  client_result get(std::string url) {
    client_request req;
    req.url = std::move(url);
    return send(std::move(req));
  }

  asio::io_context ioc;  // declared first: outlives the client's pooled sockets
  http_client client;
};

std::string url(const char* scheme, const char* host, unsigned short port,
                std::string_view path = "/") {
  return fmt::format("{}://{}:{}{}", scheme, host, port, path);
}

std::string http_url(const test_server& s, std::string_view path = "/") {
  return url("http", "127.0.0.1", s.port(), path);
}

test_server::handler ok_handler(std::string body = "ok") {
  return [body](const server_request&) { return make_response(200, body); };
}

std::string header_of(const server_request& req, std::string_view name) {
  auto it = req.find(name);
  return it == req.end() ? std::string("<absent>") : std::string(it->value());
}

std::string error_text(const client_result& r) {
  return r.error ? r.error->message : std::string("<no error>");
}

std::chrono::milliseconds since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t);
}

}  // namespace

// 1 -----------------------------------------------------------------------------------------------

TEST_CASE("a GET and a POST round-trip method, target, headers and body") {
  test_server server([](const server_request& req) {
    return make_response(req.method() == http::verb::post ? 201 : 200, "got:" + req.body(),
                         {{"X-Reply", "Yes"}, {"Content-Type", "text/plain"}});
  });
  client_fixture f;

  auto got = f.get(http_url(server, "/things?q=1#fragment"));
  REQUIRE_MESSAGE(got, error_text(got));
  CHECK(got.response->status == 200);
  CHECK(got.response->body == "got:");
  CHECK(got.response->header_value("x-reply") == "Yes");
  CHECK(got.response->header_value("content-type") == "text/plain");
  for (const auto& h : got.response->headers)
    CHECK(std::none_of(h.name.begin(), h.name.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
  CHECK(std::any_of(got.response->headers.begin(), got.response->headers.end(),
                    [](const auto& h) { return h.name == "x-reply"; }));
  CHECK(got.response->latency.count() > 0);

  client_request post;
  post.method = "POST";
  post.url = http_url(server, "/things");
  post.headers = {{"x-custom", "v1"}, {"user-agent", "custom-agent"}, {"content-length", "999"}};
  post.body = R"({"a":1})";
  auto posted = f.send(post);
  REQUIRE_MESSAGE(posted, error_text(posted));
  CHECK(posted.response->status == 201);
  CHECK(posted.response->body == R"(got:{"a":1})");

  auto seen = server.requests();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].method() == http::verb::get);
  CHECK(seen[0].target() == "/things?q=1");
  CHECK(header_of(seen[0], "host") == fmt::format("127.0.0.1:{}", server.port()));
  CHECK(header_of(seen[0], "user-agent") == "hookd");
  CHECK(header_of(seen[0], "accept-encoding") == "gzip");
  CHECK(header_of(seen[0], "content-length") == "<absent>");
  CHECK(seen[1].method() == http::verb::post);
  CHECK(seen[1].target() == "/things");
  CHECK(header_of(seen[1], "x-custom") == "v1");
  CHECK(header_of(seen[1], "user-agent") == "custom-agent");  // the caller overrides defaults
  CHECK(header_of(seen[1], "content-length") == "7");         // but never the framing
  CHECK(seen[1].body() == R"({"a":1})");
}

TEST_CASE("a header value with CR/LF is refused before anything is sent") {
  test_server server(ok_handler());
  client_fixture f;
  client_request req;
  req.url = http_url(server);
  req.headers = {{"x-evil", "a\r\nx-injected: 1"}};
  auto r = f.send(req);
  REQUIRE(r.error);
  CHECK(r.error->kind == client_error_kind::invalid_url);
  CHECK(server.accepted() == 0);
}

TEST_CASE("a HEAD response's content-length announces no body to wait for") {
  test_server server([](const server_request& req) {
    auto res = make_response(200, "");
    if (req.method() == http::verb::head) res.content_length(1000);
    return res;
  });
  client_fixture f;
  client_request head;
  head.method = "HEAD";
  head.url = http_url(server);
  head.timeout = 2s;
  auto r = f.send(head);
  REQUIRE_MESSAGE(r, error_text(r));
  CHECK(r.response->header_value("content-length") == "1000");
  CHECK(r.response->body.empty());
  REQUIRE(f.get(http_url(server)));
  CHECK(server.accepted() == 1);  // and the connection stayed usable
}

// 2 -----------------------------------------------------------------------------------------------

TEST_CASE("sequential requests to one origin share one kept-alive connection") {
  test_server server(ok_handler());
  client_fixture f;
  for (int i = 0; i < 3; ++i) {
    auto r = f.get(http_url(server, fmt::format("/{}", i)));
    REQUIRE_MESSAGE(r, error_text(r));
  }
  CHECK(server.accepted() == 1);
  CHECK(server.requests().size() == 3);
}

TEST_CASE(
    "connections are not reused after close_idle, past idle_timeout or with max_idle_per_origin "
    "0") {
  test_server server(ok_handler());
  SUBCASE("close_idle") {
    client_fixture f;
    REQUIRE(f.get(http_url(server)));
    f.client.close_idle();
    REQUIRE(f.get(http_url(server)));
    CHECK(server.accepted() == 2);
  }
  SUBCASE("max_idle_per_origin 0") {
    auto o = test_options();
    o.max_idle_per_origin = 0;
    client_fixture f(o);
    REQUIRE(f.get(http_url(server)));
    REQUIRE(f.get(http_url(server)));
    CHECK(server.accepted() == 2);
  }
  SUBCASE("idle_timeout") {
    auto o = test_options();
    o.idle_timeout = 0s;
    client_fixture f(o);
    REQUIRE(f.get(http_url(server)));
    std::this_thread::sleep_for(5ms);
    REQUIRE(f.get(http_url(server)));
    CHECK(server.accepted() == 2);
  }
}

TEST_CASE("a server that closes kept-alive connections does not fail the next request") {
  test_server server(ok_handler(), behaviour::close_after_response);
  client_fixture f;
  for (int i = 0; i < 3; ++i) {
    auto r = f.get(http_url(server));
    REQUIRE_MESSAGE(r, error_text(r));
  }
  CHECK(server.accepted() == 3);
}

TEST_CASE("a reused connection dropped before any response byte is retried once on a fresh one") {
  test_server server(ok_handler(), behaviour::drop_second_request);
  client_fixture f;
  REQUIRE(f.get(http_url(server, "/first")));
  auto second = f.get(http_url(server, "/second"));
  REQUIRE_MESSAGE(second, error_text(second));
  CHECK(second.response->body == "ok");
  CHECK(server.accepted() == 2);
  auto seen = server.requests();
  REQUIRE(seen.size() == 3);  // first, second (dropped), second again
  CHECK(seen[1].target() == "/second");
  CHECK(seen[2].target() == "/second");
}

// 3 -----------------------------------------------------------------------------------------------

TEST_CASE("TLS with the test CA succeeds, by name with SNI and by IP without, and keeps alive") {
  const auto& p = pki();
  test_server server(ok_handler("secure"), behaviour::respond, p.server_cert, p.server_key);
  auto o = test_options();
  o.ca_file = p.ca_cert;
  client_fixture f(o);

  auto by_name = f.get(url("https", "localhost", server.port()));
  REQUIRE_MESSAGE(by_name, error_text(by_name));
  CHECK(by_name.response->body == "secure");
  CHECK(server.last_server_name() == "localhost");
  REQUIRE(f.get(url("https", "localhost", server.port(), "/again")));
  CHECK(server.accepted() == 1);

  auto by_ip = f.get(url("https", "127.0.0.1", server.port()));
  REQUIRE_MESSAGE(by_ip, error_text(by_ip));
  CHECK(server.last_server_name() == "");  // no SNI for an IP literal
  CHECK(server.accepted() == 2);           // another origin, another connection
}

TEST_CASE("TLS fails without the CA, with a self-signed certificate and with a wrong name") {
  const auto& p = pki();
  auto trusting = test_options();
  trusting.ca_file = p.ca_cert;

  SUBCASE("the system store alone does not trust the test CA") {
    test_server server(ok_handler(), behaviour::respond, p.server_cert, p.server_key);
    client_fixture f;
    auto r = f.get(url("https", "localhost", server.port()));
    REQUIRE(r.error);
    CHECK(r.error->kind == client_error_kind::tls_failed);
    CHECK(server.requests().empty());
  }
  SUBCASE("self-signed") {
    test_server server(ok_handler(), behaviour::respond, p.self_cert, p.self_key);
    client_fixture f(trusting);
    auto r = f.get(url("https", "localhost", server.port()));
    REQUIRE(r.error);
    CHECK(r.error->kind == client_error_kind::tls_failed);
    CHECK_MESSAGE(r.error->message.find("self-signed") != std::string::npos, r.error->message);
    CHECK(r.error->message.find("localhost:") != std::string::npos);
    CHECK(server.requests().empty());
  }
  SUBCASE("a certificate for another name, by name and by IP") {
    test_server server(ok_handler(), behaviour::respond, p.wrong_cert, p.wrong_key);
    client_fixture f(trusting);
    auto by_name = f.get(url("https", "localhost", server.port()));
    REQUIRE(by_name.error);
    CHECK(by_name.error->kind == client_error_kind::tls_failed);
    CHECK_MESSAGE(by_name.error->message.find("hostname mismatch") != std::string::npos,
                  by_name.error->message);
    auto by_ip = f.get(url("https", "127.0.0.1", server.port()));
    REQUIRE(by_ip.error);
    CHECK(by_ip.error->kind == client_error_kind::tls_failed);
    CHECK_MESSAGE(by_ip.error->message.find("IP address mismatch") != std::string::npos,
                  by_ip.error->message);
    CHECK(server.requests().empty());
  }
  SUBCASE("verify_tls false accepts anything (explicit test set-ups only)") {
    test_server server(ok_handler(), behaviour::respond, p.self_cert, p.self_key);
    auto o = test_options();
    o.verify_tls = false;
    client_fixture f(o);
    auto r = f.get(url("https", "localhost", server.port()));
    CHECK_MESSAGE(r, error_text(r));
  }
}

// 4 -----------------------------------------------------------------------------------------------

TEST_CASE("a server that never answers hits the total timeout, naming host and phase") {
  test_server server(ok_handler(), behaviour::silent);
  client_fixture f;
  client_request req;
  req.url = http_url(server);
  req.timeout = 300ms;
  auto started = std::chrono::steady_clock::now();
  auto r = f.send(req);
  auto elapsed = since(started);
  REQUIRE(r.error);
  CHECK(r.error->kind == client_error_kind::timeout);
  CHECK_MESSAGE(r.error->message.find("127.0.0.1") != std::string::npos, r.error->message);
  CHECK_MESSAGE(r.error->message.find("waiting for the response") != std::string::npos,
                r.error->message);
  CHECK(elapsed >= 250ms);
  CHECK(elapsed < 2s);
}

TEST_CASE("a TLS server that never shakes hands hits the connect timeout") {
  test_server server(ok_handler(), behaviour::silent);
  auto o = test_options();
  o.connect_timeout = 300ms;
  o.total_timeout = 10s;
  client_fixture f(o);
  auto started = std::chrono::steady_clock::now();
  auto r = f.get(url("https", "127.0.0.1", server.port()));
  auto elapsed = since(started);
  REQUIRE(r.error);
  CHECK(r.error->kind == client_error_kind::timeout);
  CHECK_MESSAGE(r.error->message.find("TLS handshake") != std::string::npos, r.error->message);
  CHECK_MESSAGE(r.error->message.find("connect timeout") != std::string::npos, r.error->message);
  CHECK(elapsed < 2s);
}

TEST_CASE("a port nobody listens on fails with connect_failed") {
  unsigned short port;
  {
    asio::io_context ioc;
    tcp::acceptor a(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = a.local_endpoint().port();
  }
  client_fixture f;
  auto r = f.get(url("http", "127.0.0.1", port));
  REQUIRE(r.error);
  CHECK(r.error->kind == client_error_kind::connect_failed);
}

// 5 -----------------------------------------------------------------------------------------------

TEST_CASE("a response body over max_response_bytes fails with body_too_large") {
  auto o = test_options();
  o.max_response_bytes = 1000;
  SUBCASE("with content-length") {
    test_server server([](const server_request& req) {
      return make_response(200, std::string(req.target() == "/big" ? 5000 : 1000, 'x'));
    });
    client_fixture f(o);
    auto r = f.get(http_url(server, "/big"));
    REQUIRE(r.error);
    CHECK(r.error->kind == client_error_kind::body_too_large);
    auto at_limit = f.get(http_url(server, "/exact"));
    REQUIRE_MESSAGE(at_limit, error_text(at_limit));
    CHECK(at_limit.response->body.size() == 1000);
    CHECK(server.accepted() == 2);  // the oversized response's connection was discarded
  }
  SUBCASE("chunked") {
    test_server server([](const server_request&) {
      server_response res{http::status::ok, 11};
      res.body() = std::string(5000, 'x');
      res.chunked(true);
      return res;
    });
    client_fixture f(o);
    auto r = f.get(http_url(server));
    REQUIRE(r.error);
    CHECK(r.error->kind == client_error_kind::body_too_large);
  }
}

TEST_CASE("truncate_large_bodies keeps the status of an oversized answer and reads no further") {
  auto o = test_options();
  o.max_response_bytes = 1000;
  o.truncate_large_bodies = true;
  SUBCASE("with content-length") {
    test_server server([](const server_request& req) {
      return make_response(req.target() == "/big" ? 503 : 200,
                           std::string(req.target() == "/big" ? 1'000'000 : 10, 'x'));
    });
    client_fixture f(o);
    auto r = f.get(http_url(server, "/big"));
    REQUIRE_MESSAGE(r, error_text(r));
    CHECK(r.response->status == 503);
    CHECK(r.response->body.size() <= 1000);
    auto next = f.get(http_url(server, "/small"));
    REQUIRE_MESSAGE(next, error_text(next));
    CHECK(next.response->body == std::string(10, 'x'));
    CHECK(server.accepted() == 2);  // the cut connection was not reused
  }
  SUBCASE("chunked") {
    test_server server([](const server_request&) {
      server_response res{http::status::ok, 11};
      res.body() = std::string(200'000, 'x');
      res.chunked(true);
      return res;
    });
    client_fixture f(o);
    auto r = f.get(http_url(server));
    REQUIRE_MESSAGE(r, error_text(r));
    CHECK(r.response->status == 200);
    CHECK(r.response->body.size() <= 1000);
  }
}

// 6 -----------------------------------------------------------------------------------------------

TEST_CASE("a gzip body is inflated, and its inflated size is capped too") {
  std::string original;
  for (int i = 0; i < 200; ++i)
    original += fmt::format("{{\"id\":{},\"name\":\"record {}\"}},", i, i);
  test_server server([&original](const server_request& req) {
    if (req.target() == "/bomb")
      return make_response(200, gzip(std::string(100'000, '0')), {{"Content-Encoding", "gzip"}});
    return make_response(200, gzip(original), {{"Content-Encoding", "gzip"}, {"X-Other", "kept"}});
  });

  SUBCASE("inflated") {
    client_fixture f;
    auto r = f.get(http_url(server));
    REQUIRE_MESSAGE(r, error_text(r));
    CHECK(r.response->body == original);
    CHECK(r.response->header_value("x-other") == "kept");
    CHECK(!r.response->header_value("content-encoding"));  // it describes the body no more
    CHECK(header_of(server.requests().at(0), "accept-encoding") == "gzip");
  }
  SUBCASE("a small gzip body that inflates past the cap") {
    auto o = test_options();
    o.max_response_bytes = 10'000;
    client_fixture f(o);
    auto r = f.get(http_url(server, "/bomb"));
    REQUIRE(r.error);
    CHECK(r.error->kind == client_error_kind::body_too_large);
  }
  SUBCASE("accept_gzip false asks for nothing and inflates nothing") {
    auto o = test_options();
    o.accept_gzip = false;
    client_fixture f(o);
    auto r = f.get(http_url(server));
    REQUIRE_MESSAGE(r, error_text(r));
    CHECK(r.response->body == gzip(original));
    CHECK(header_of(server.requests().at(0), "accept-encoding") == "<absent>");
  }
}

// 7 -----------------------------------------------------------------------------------------------

TEST_CASE("a redirect is returned as it is, not followed") {
  test_server server([](const server_request& req) {
    if (req.target() == "/old") return make_response(302, "", {{"Location", "/new"}});
    return make_response(200, "new");
  });
  client_fixture f;
  auto r = f.get(http_url(server, "/old"));
  REQUIRE_MESSAGE(r, error_text(r));
  CHECK(r.response->status == 302);
  CHECK(r.response->header_value("location") == "/new");
  CHECK(server.requests().size() == 1);
}

// 8 -----------------------------------------------------------------------------------------------

TEST_CASE("allow_address refusing every address means address_refused and no connection") {
  test_server server(ok_handler());
  auto o = test_options();
  std::vector<std::string> asked;
  o.allow_address = [&asked](const asio::ip::address& a) {
    asked.push_back(a.to_string());
    return false;
  };
  client_fixture f(o);
  auto r = f.get(http_url(server));
  REQUIRE(r.error);
  CHECK(r.error->kind == client_error_kind::address_refused);
  CHECK_MESSAGE(r.error->message.find("127.0.0.1") != std::string::npos, r.error->message);
  CHECK(asked == std::vector<std::string>{"127.0.0.1"});
  CHECK(server.accepted() == 0);
}

TEST_CASE("allow_address filters addresses one by one: localhost over IPv4 only") {
  test_server server(ok_handler());
  auto o = test_options();
  std::vector<std::string> asked;
  o.allow_address = [&asked](const asio::ip::address& a) {
    asked.push_back(a.to_string());
    return a.is_v4();
  };
  client_fixture f(o);
  auto r = f.get(url("http", "localhost", server.port()));
  REQUIRE_MESSAGE(r, error_text(r));
  CHECK(std::find(asked.begin(), asked.end(), "127.0.0.1") != asked.end());
  CHECK(server.accepted() == 1);
}

// 9 -----------------------------------------------------------------------------------------------

TEST_CASE("parse_url") {
  auto u = parse_url("http://example.com");
  REQUIRE(u);
  CHECK(!u->tls);
  CHECK(u->host == "example.com");
  CHECK(u->port == "80");
  CHECK(u->target == "/");

  u = parse_url("HTTPS://API.Example.com:8443/v1/items?limit=10&x=%20#frag");
  REQUIRE(u);
  CHECK(u->tls);
  CHECK(u->host == "api.example.com");
  CHECK(u->port == "8443");
  CHECK(u->target == "/v1/items?limit=10&x=%20");

  u = parse_url("https://example.com?q=1");
  REQUIRE(u);
  CHECK(u->port == "443");
  CHECK(u->target == "/?q=1");

  u = parse_url("http://[::1]:8080/x");
  REQUIRE(u);
  CHECK(u->host == "::1");
  CHECK(u->port == "8080");
  CHECK(u->target == "/x");

  u = parse_url("https://[2001:db8::1]");
  REQUIRE(u);
  CHECK(u->host == "2001:db8::1");
  CHECK(u->port == "443");

  u = parse_url("http://127.0.0.1:/");  // an empty port is the default one
  REQUIRE(u);
  CHECK(u->port == "80");

  for (const char* bad : {"",
                          "example.com/path",
                          "//example.com/",
                          "ftp://example.com/",
                          "http://",
                          "http:///path",
                          "http://:80/",
                          "http://user:pass@example.com/",
                          "http://user@example.com/",
                          "http://example.com:0/",
                          "http://example.com:65536/",
                          "http://example.com:8o/",
                          "http://example.com:-1/",
                          "http://example.com:1:2/",
                          "http://exa mple.com/",
                          "http://example.com/a b",
                          "http://example.com/\x01",
                          "http://example.com/\n",
                          "http://[::1/",
                          "http://[not-v6]/",
                          "http://[::1]x/",
                          "http://exa%6dple.com/",
                          "http://example.com\\@evil.com/"}) {
    CAPTURE(bad);
    CHECK(!parse_url(bad));
  }
}

TEST_CASE("an invalid URL is an invalid_url error that does not echo the URL") {
  client_fixture f;
  auto r = f.get("http://user:secret@example.com/");
  REQUIRE(r.error);
  CHECK(r.error->kind == client_error_kind::invalid_url);
  CHECK(r.error->message.find("secret") == std::string::npos);
}

// 10 ----------------------------------------------------------------------------------------------

namespace {

asio::awaitable<void> send_one(http_client& client, std::atomic<int>& good, std::string base,
                               int i) {
  client_request req;
  req.method = "POST";
  req.url = base + "/echo";
  req.body = std::to_string(i);
  auto r = co_await client.send(std::move(req));
  if (r && r.response->body == "echo:" + std::to_string(i)) ++good;
}

// Sends `count` requests at once from coroutines on a 2-thread io_context; returns how many
// came back with the body the server made for them.
int concurrent_sends(const std::string& base, int count, client_options options) {
  asio::io_context ioc;
  std::atomic<int> good{0};
  {
    http_client client(ioc.get_executor(), std::move(options));
    for (int i = 0; i < count; ++i) {
      // An exception would leave its request uncounted, which fails the test.
      asio::co_spawn(asio::make_strand(ioc), send_one(client, good, base, i),
                     [](std::exception_ptr) {});
    }
    std::thread second([&ioc] { ioc.run(); });
    ioc.run();
    second.join();
  }
  return good.load();
}

test_server::handler echo_handler() {
  return [](const server_request& req) { return make_response(200, "echo:" + req.body()); };
}

}  // namespace

TEST_CASE("50 concurrent sends on a 2-thread io_context all succeed") {
  test_server server(echo_handler());
  CHECK(concurrent_sends(http_url(server, ""), 50, test_options()) == 50);
  CHECK(server.requests().size() == 50);
}

TEST_CASE("concurrent TLS sends all succeed") {
  const auto& p = pki();
  test_server server(echo_handler(), behaviour::respond, p.server_cert, p.server_key);
  auto o = test_options();
  o.ca_file = p.ca_cert;
  CHECK(concurrent_sends(url("https", "localhost", server.port(), ""), 30, o) == 30);
}
