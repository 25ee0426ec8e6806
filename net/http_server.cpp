#include "net/http_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <spdlog/spdlog.h>

namespace hookd::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

tcp::endpoint parse_endpoint(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("expected host:port");
  auto host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) throw std::invalid_argument("'" + host + "' is not an IP address");
  int port = std::stoi(listen.substr(colon + 1));
  if (port < 0 || port > 65535) throw std::invalid_argument("port out of range");
  return {address, static_cast<unsigned short>(port)};
}

http_server::http_server(asio::io_context& ioc, const tcp::endpoint& endpoint,
                         server_options options, handler h, error_body e, logger l)
    : ioc_(ioc), acceptor_(ioc), state_(std::make_shared<state>()) {
  state_->on_request = std::move(h);
  state_->make_error = std::move(e);
  state_->log = std::move(l);
  state_->options = options;
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
}

tcp::endpoint http_server::local_endpoint() const { return acceptor_.local_endpoint(); }

void http_server::start() {
  asio::co_spawn(ioc_, accept_loop(state_, acceptor_), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("HTTP accept loop failed: {}", ex.what());
    }
  });
}

void http_server::stop() {
  state_->stopping = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
}

asio::awaitable<void> http_server::accept_loop(std::shared_ptr<state> s, tcp::acceptor& acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(tuple_awaitable);
    if (ec == asio::error::operation_aborted || s->stopping) co_return;
    if (ec) {
      spdlog::warn("accept failed: {}", ec.message());
      continue;
    }
    auto ex = socket.get_executor();
    asio::co_spawn(ex, session(s, std::move(socket)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("HTTP session failed: {}", ex.what());
      }
    });
  }
}

namespace {

response error_response(unsigned status, std::string body, unsigned version) {
  response res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, "application/json");
  res.body() = std::move(body);
  res.keep_alive(false);
  res.prepare_payload();
  return res;
}

std::string path_of(beast::string_view target) {
  auto q = target.find('?');
  return std::string(target.substr(0, q));
}

// After refusing a request whose body is still arriving, read and drop what the client
// sends for a moment so that it sees our response rather than a connection reset.
asio::awaitable<void> drain(beast::tcp_stream& stream) {
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.expires_after(std::chrono::seconds(2));
  std::array<char, 16384> buf;
  std::size_t total = 0;
  while (total < 64 * 1024 * 1024) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(buf), tuple_awaitable);
    if (ec) break;
    total += n;
  }
}

}  // namespace

asio::awaitable<void> http_server::session(std::shared_ptr<state> s, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  boost::system::error_code remote_ec;
  auto remote_ep = stream.socket().remote_endpoint(remote_ec);
  std::string remote = remote_ec ? "" : remote_ep.address().to_string();
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(s->options.body_limit);
    parser.header_limit(s->options.header_limit);
    stream.expires_after(s->options.timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset || ec == asio::error::eof)
      break;
    auto started = std::chrono::steady_clock::now();
    if (ec) {
      unsigned status = 400;
      std::string code = "bad_request", message = "malformed HTTP request: " + ec.message();
      if (ec == http::error::body_limit) {
        status = 413;
        code = "payload_too_large";
        message = fmt::format("the request body is larger than {} bytes", s->options.body_limit);
      } else if (ec == http::error::header_limit) {
        status = 431;
        code = "headers_too_large";
        message = fmt::format("the request headers are larger than {} bytes",
                              s->options.header_limit);
      }
      auto res = error_response(status, s->make_error(status, code, message), 11);
      stream.expires_after(s->options.timeout);
      co_await http::async_write(stream, res, tuple_awaitable);
      if (s->log) {
        const auto& h = parser.get();
        s->log({std::string(h.method_string()), path_of(h.target()), status,
                std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - started),
                remote});
      }
      co_await drain(stream);
      co_return;
    }
    auto req = parser.release();
    bool keep_alive = req.keep_alive() && !s->stopping;
    unsigned version = req.version();
    request_log_entry entry{std::string(req.method_string()), path_of(req.target()), 0, {}, remote};
    response res;
    ++s->in_flight;
    try {
      res = co_await s->on_request(std::move(req));
    } catch (const std::exception& e) {
      spdlog::error("request handler failed: {}", e.what());
      res = error_response(500, s->make_error(500, "internal_error", "internal error"), version);
    }
    --s->in_flight;
    res.version(version);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    entry.status = res.result_int();
    entry.latency = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started);
    if (s->log) s->log(entry);
    stream.expires_after(s->options.timeout);
    auto [wec, wn] = co_await http::async_write(stream, res, tuple_awaitable);
    if (wec || !keep_alive) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace hookd::net
