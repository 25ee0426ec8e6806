#pragma once
// Real local servers for the HTTP client tests: plain or TLS Beast servers on 127.0.0.1, port 0,
// each on its own io_context thread, with misbehaviours on demand; and a throw-away test PKI made
// with the openssl CLI.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

namespace hookd::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

using server_request = http::request<http::string_body>;
using server_response = http::response<http::string_body>;

// What a server does on each connection.
enum class behaviour {
  respond,               // answer every request, keep-alive as asked
  close_after_response,  // answer, claim keep-alive, then close the connection at once
  drop_second_request,   // answer the first request, read the second and close without answering
  silent,                // accept and never read nor write
};

// A response with its framing headers set.
server_response make_response(unsigned status, std::string body,
                              std::vector<std::pair<std::string, std::string>> headers = {});

class test_server {
 public:
  using handler = std::function<server_response(const server_request&)>;

  // tls: the server's certificate and key (PEM files); plain HTTP when empty.
  explicit test_server(handler h, behaviour b = behaviour::respond, std::string cert_file = {},
                       std::string key_file = {});
  ~test_server();
  test_server(const test_server&) = delete;
  test_server& operator=(const test_server&) = delete;

  unsigned short port() const { return port_; }
  int accepted() const { return accepted_.load(); }
  std::vector<server_request> requests() const;
  std::string last_server_name() const;  // SNI of the last TLS handshake, "" when none was sent

 private:
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(tcp::socket socket);
  template <class Stream>
  asio::awaitable<void> serve(Stream& stream);

  handler handler_;
  behaviour behaviour_;
  std::shared_ptr<ssl::context> tls_;
  mutable std::mutex mutex_;
  std::vector<server_request> requests_;
  std::string server_name_;
  std::atomic<int> accepted_{0};
  // Declared last: destroyed first, and with it every session still holding the members above.
  asio::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  unsigned short port_ = 0;
  std::thread thread_;
};

// Certificates made once per test run in a temporary directory.
struct test_pki {
  std::string dir;
  std::string ca_cert;                  // the test CA, to put in client_options::ca_file
  std::string server_cert, server_key;  // signed by the CA for DNS:localhost, IP:127.0.0.1
  std::string wrong_cert, wrong_key;    // signed by the CA for DNS:wrong.example only
  std::string self_cert, self_key;      // self-signed for localhost/127.0.0.1, untrusted
};
const test_pki& pki();

// gzip-compresses with zlib (what a server's content-encoding: gzip sends).
std::string gzip(std::string_view data);

}  // namespace hookd::test
