#include "test_server.hpp"

#include <stdlib.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace hookd::test {

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

void rethrow_to_stderr(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "test server coroutine failed: %s\n", ex.what());
  }
}

}  // namespace

server_response make_response(unsigned status, std::string body,
                              std::vector<std::pair<std::string, std::string>> headers) {
  server_response res{static_cast<http::status>(status), 11};
  for (auto& [name, value] : headers) res.insert(name, value);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

test_server::test_server(handler h, behaviour b, std::string cert_file, std::string key_file)
    : handler_(std::move(h)), behaviour_(b) {
  if (!cert_file.empty()) {
    tls_ = std::make_shared<ssl::context>(ssl::context::tls_server);
    tls_->use_certificate_chain_file(cert_file);
    tls_->use_private_key_file(key_file, ssl::context::pem);
  }
  tcp::endpoint endpoint{asio::ip::make_address("127.0.0.1"), 0};
  acceptor_.open(endpoint.protocol());
  acceptor_.bind(endpoint);
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(ioc_, accept_loop(), rethrow_to_stderr);
  thread_ = std::thread([this] { ioc_.run(); });
}

test_server::~test_server() {
  ioc_.stop();
  thread_.join();
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

std::vector<server_request> test_server::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::string test_server::last_server_name() const {
  std::lock_guard lock(mutex_);
  return server_name_;
}

asio::awaitable<void> test_server::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(tuple_awaitable);
    if (ec) co_return;
    ++accepted_;
    asio::co_spawn(ioc_, session(std::move(socket)), rethrow_to_stderr);
  }
}

asio::awaitable<void> test_server::session(tcp::socket socket) {
  if (behaviour_ == behaviour::silent) {
    // Hold the connection open without a byte either way, until the server stops.
    asio::steady_timer forever(ioc_, std::chrono::hours(1));
    co_await forever.async_wait(tuple_awaitable);
    co_return;
  }
  if (!tls_) {
    beast::tcp_stream stream(std::move(socket));
    co_await serve(stream);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *tls_);
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, tuple_awaitable);
  if (ec) co_return;  // e.g. the client refused our certificate
  const char* name = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
  {
    std::lock_guard lock(mutex_);
    server_name_ = name ? name : "";
  }
  co_await serve(stream);
}

template <class Stream>
asio::awaitable<void> test_server::serve(Stream& stream) {
  beast::flat_buffer buffer;
  for (int n = 1;; ++n) {
    server_request req;
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
    auto [ec, read] = co_await http::async_read(stream, buffer, req, tuple_awaitable);
    if (ec) co_return;
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(req);
    }
    if (behaviour_ == behaviour::drop_second_request && n == 2) co_return;
    auto res = handler_(req);
    bool close_now = behaviour_ == behaviour::close_after_response;
    res.keep_alive(req.keep_alive());
    auto [write_ec, written] = co_await http::async_write(stream, res, tuple_awaitable);
    if (write_ec || close_now || !res.keep_alive()) co_return;
  }
}

// -------------------------------------------------------------------------------------------------

namespace {

constexpr const char* pki_config = R"(
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[wrong_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
)";

constexpr const char* ec_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

void run(const std::string& dir, const std::string& command) {
  auto full = "cd '" + dir + "' && openssl " + command + " >>openssl.log 2>&1";
  if (std::system(full.c_str()) != 0) {
    std::ifstream log(dir + "/openssl.log");
    std::stringstream text;
    text << log.rdbuf();
    throw std::runtime_error("openssl failed: " + command + "\n" + text.str());
  }
}

// A key and a certificate for `cn` signed by the test CA with the extensions of section `ext`.
void issue(const std::string& dir, const std::string& name, const std::string& cn,
           const std::string& ext) {
  run(dir, fmt::format("req -new -config pki.cnf {} -keyout {}.key -out {}.csr -subj /CN={}",
                       ec_key, name, name, cn));
  run(dir,
      fmt::format(
          "x509 -req -in {0}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out {0}.pem "
          "-extfile pki.cnf -extensions {1}",
          name, ext));
}

test_pki make_pki() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "hookd-net-tests-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  test_pki p;
  p.dir = pattern;
  std::ofstream(p.dir + "/pki.cnf") << pki_config;
  run(p.dir,
      fmt::format(
          "req -x509 -config pki.cnf -extensions ca_ext {} -keyout ca.key -out ca.pem -days 2 "
          "-subj '/CN=hookd test CA'",
          ec_key));
  issue(p.dir, "server", "localhost", "server_ext");
  issue(p.dir, "wrong", "wrong.example", "wrong_ext");
  // Self-signed, with names that would match: only the missing trust makes it fail.
  run(p.dir,
      fmt::format(
          "req -x509 -config pki.cnf -extensions server_ext {} -keyout self.key -out self.pem "
          "-days 2 -subj /CN=localhost",
          ec_key));
  p.ca_cert = p.dir + "/ca.pem";
  p.server_cert = p.dir + "/server.pem";
  p.server_key = p.dir + "/server.key";
  p.wrong_cert = p.dir + "/wrong.pem";
  p.wrong_key = p.dir + "/wrong.key";
  p.self_cert = p.dir + "/self.pem";
  p.self_key = p.dir + "/self.key";
  return p;
}

struct pki_holder {
  test_pki pki = make_pki();
  ~pki_holder() {
    std::error_code ignored;
    std::filesystem::remove_all(pki.dir, ignored);
  }
};

}  // namespace

const test_pki& pki() {
  static pki_holder holder;
  return holder.pki;
}

std::string gzip(std::string_view data) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out(deflateBound(&zs, data.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
  out.resize(zs.total_out);
  return out;
}

}  // namespace hookd::test
