#pragma once
// An HTTP/1.1 server on Boost.Beast: one coroutine per connection (on its own strand),
// keep-alive, an idle timeout before each request and a timeout for reading it and for
// writing its response, header and body size limits, and a bound on open connections
// (connection_table). The application supplies one coroutine that turns a request into a
// response.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http.hpp>

#include "net/connection_table.hpp"

namespace hookd::net {

namespace http = boost::beast::http;
using request = http::request<http::string_body>;
using response = http::response<http::string_body>;

struct server_options {
  std::size_t body_limit = 1024 * 1024;
  std::uint32_t header_limit = 16 * 1024;
  std::chrono::seconds timeout{30};       // from a request's first byte to its last; each write
  std::chrono::seconds idle_timeout{60};  // for the first byte of a request
  std::size_t max_connections = 1024;
};

struct request_log_entry {
  std::string method;
  std::string path;  // without the query string, which may carry secrets
  unsigned status = 0;
  std::chrono::microseconds latency{};
  std::string remote;
};

class http_server {
public:
  // handler: must return a response; an exception it throws becomes a 500.
  using handler = std::function<boost::asio::awaitable<response>(request)>;
  // error_body: the JSON body for an error the server itself answers (413, 400, 431...).
  using error_body = std::function<std::string(unsigned status, std::string_view code,
                                               std::string_view message)>;
  using logger = std::function<void(const request_log_entry&)>;

  http_server(boost::asio::io_context& ioc, const boost::asio::ip::tcp::endpoint& endpoint,
              server_options options, handler h, error_body e, logger l);

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  void start();
  // Stops accepting; connections close after their in-flight request.
  void stop();
  // Requests being handled right now (for draining at shutdown).
  int in_flight() const { return state_->in_flight.load(); }
  // Connections open right now.
  std::size_t connections() const { return state_->connections->size(); }

private:
  struct state {
    handler on_request;
    error_body make_error;
    logger log;
    server_options options;
    std::atomic<int> in_flight{0};
    std::atomic<bool> stopping{false};
    std::unique_ptr<connection_table> connections;
  };
  static boost::asio::awaitable<void> accept_loop(std::shared_ptr<state> s,
                                                  boost::asio::ip::tcp::acceptor& acceptor);
  static boost::asio::awaitable<void> report_loop(std::shared_ptr<state> s);
  static boost::asio::awaitable<void> session(std::shared_ptr<state> s,
                                              boost::asio::ip::tcp::socket socket,
                                              connection_table::slot_ptr slot);

  boost::asio::io_context& ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<state> state_;
};

// "host:port" (IPv6 as "[::1]:8080") to an endpoint; throws std::invalid_argument.
boost::asio::ip::tcp::endpoint parse_endpoint(const std::string& listen);

}  // namespace hookd::net
