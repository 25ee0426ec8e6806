#include "net/http_server.hpp"

#include <array>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
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
  state_->connections = std::make_unique<connection_table>(options.max_connections);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
}

tcp::endpoint http_server::local_endpoint() const { return acceptor_.local_endpoint(); }

namespace {

// The completion handler of a spawned server coroutine: nothing ends silently.
auto log_failure(const char* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("{} failed: {}", what, ex.what());
    }
  };
}

// Out of file descriptors (or kernel memory), accept fails at once until a connection closes.
bool out_of_resources(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory || ec == boost::system::errc::too_many_files_open_in_system;
}

// After a failed accept: logs it (resource exhaustion at most every 10 s, or it would be a
// line per attempt) and, when descriptors ran out below max_connections (a low `ulimit -n`),
// gives back an idle client's before the database pools or deliveries miss one, or else
// pauses rather than spin.
class accept_recovery {
public:
  explicit accept_recovery(asio::any_io_executor ex) : pause_(ex) {}

  asio::awaitable<void> after(const boost::system::error_code& ec, connection_table& connections) {
    bool exhausted = out_of_resources(ec);
    auto now = std::chrono::steady_clock::now();
    if (!exhausted || now - last_warning_ > std::chrono::seconds(10)) {
      spdlog::warn("accept failed: {}{}", ec.message(),
                   exhausted ? " (logged at most every 10 s)" : "");
      if (exhausted) last_warning_ = now;
    }
    if (!exhausted) co_return;
    if (connections.shed_one()) {
      // Its close is queued already: let it run, then accept again.
      co_await asio::post(pause_.get_executor(), asio::use_awaitable);
      co_return;
    }
    pause_.expires_after(std::chrono::milliseconds(100));
    co_await pause_.async_wait(tuple_awaitable);
  }

private:
  asio::steady_timer pause_;
  std::chrono::steady_clock::time_point last_warning_{};
};

}  // namespace

void http_server::start() {
  asio::co_spawn(ioc_, accept_loop(state_, acceptor_), log_failure("HTTP accept loop"));
  asio::co_spawn(ioc_, report_loop(state_), log_failure("HTTP connection report"));
}

void http_server::stop() {
  state_->stopping = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
}

asio::awaitable<void> http_server::report_loop(std::shared_ptr<state> s) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!s->stopping) {
    timer.expires_after(s->connections->log_interval());
    co_await timer.async_wait(tuple_awaitable);
    s->connections->report();
  }
}

asio::awaitable<void> http_server::accept_loop(std::shared_ptr<state> s, tcp::acceptor& acceptor) {
  accept_recovery recovery(acceptor.get_executor());
  for (;;) {
    // Each connection runs on its own strand, so that the connection table may close it from
    // here (to make room) without racing its session.
    asio::any_io_executor strand = asio::make_strand(acceptor.get_executor());
    auto accepted = co_await acceptor.async_accept(strand, tuple_awaitable);
    auto ec = std::get<0>(accepted);
    if (ec == asio::error::operation_aborted || s->stopping) co_return;
    if (ec) {
      co_await recovery.after(ec, *s->connections);
      continue;
    }
    auto& socket = std::get<1>(accepted);
    auto slot = s->connections->admit(socket.get_executor());
    if (!slot) {
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    auto ex = socket.get_executor();
    asio::co_spawn(ex, session(s, std::move(socket), std::move(slot)), log_failure("HTTP session"));
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

namespace {

// The table's slot for one session: set up on the session's strand, released however the
// session ends.
class slot_guard {
public:
  slot_guard(connection_table& table, connection_table::slot_ptr slot, beast::tcp_stream& stream)
      : table_(table), slot_(std::move(slot)) {
    slot_->on_close([&stream] { stream.close(); });
  }
  ~slot_guard() {
    slot_->on_close(nullptr);
    table_.release(slot_);
  }
  slot_guard(const slot_guard&) = delete;
  slot_guard& operator=(const slot_guard&) = delete;
  const connection_table::slot_ptr& slot() const { return slot_; }

private:
  connection_table& table_;
  connection_table::slot_ptr slot_;
};

// The connection ended, or was closed by the client or to make room: nothing to answer.
bool connection_gone(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == http::error::partial_message ||
         ec == asio::error::connection_reset || ec == asio::error::eof ||
         ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor;
}

struct refusal {
  unsigned status;
  std::string code;
  std::string message;
};

// Why a request that could not be read is refused.
refusal refusal_for(const boost::system::error_code& ec, const server_options& o) {
  if (ec == beast::error::timeout)
    return {408, "request_timeout",
            fmt::format("the request did not arrive within {} seconds", o.timeout.count())};
  if (ec == http::error::body_limit)
    return {413, "payload_too_large",
            fmt::format("the request body is larger than {} bytes", o.body_limit)};
  if (ec == http::error::header_limit)
    return {431, "headers_too_large",
            fmt::format("the request headers are larger than {} bytes", o.header_limit)};
  return {400, "bad_request", "malformed HTTP request: " + ec.message()};
}

// A client that does not read gets no longer than this for a refusal.
constexpr std::chrono::seconds refusal_write_timeout{5};

// Reads one request under one deadline for all of it, however slowly its headers or body
// arrive. The stream's own timeout would close the socket; this deadline only cancels the
// read, so that the client can still be told 408.
asio::awaitable<boost::system::error_code> read_request(
    beast::tcp_stream& stream, beast::flat_buffer& buffer,
    http::request_parser<http::string_body>& parser, std::chrono::seconds timeout) {
  auto expired = std::make_shared<bool>(false);
  auto armed = std::make_shared<bool>(true);
  asio::steady_timer timer(stream.get_executor());
  timer.expires_after(timeout);
  // Runs on the connection's strand; `armed` stops a wake-up queued just as the read finished.
  auto on_deadline = [expired, armed, &stream](const boost::system::error_code& ec) {
    if (ec || !*armed) return;
    *expired = true;
    boost::system::error_code ignored;
    stream.socket().cancel(ignored);
  };
  timer.async_wait(std::move(on_deadline));
  stream.expires_never();
  auto result = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
  *armed = false;
  timer.cancel();
  auto ec = std::get<0>(result);
  if (ec && *expired) co_return make_error_code(beast::error::timeout);
  co_return ec;
}

}  // namespace

asio::awaitable<void> http_server::session(std::shared_ptr<state> s, tcp::socket socket,
                                           connection_table::slot_ptr slot) {
  beast::tcp_stream stream(std::move(socket));
  slot_guard guard(*s->connections, std::move(slot), stream);
  boost::system::error_code remote_ec;
  auto remote_ep = stream.socket().remote_endpoint(remote_ec);
  std::string remote = remote_ec ? "" : remote_ep.address().to_string();
  beast::flat_buffer buffer;
  std::array<char, 512> first_bytes;
  for (;;) {
    s->connections->waiting(guard.slot());
    // Waiting for a request holds no heap buffer (the last request's is given back); an idle
    // client is dropped after idle_timeout.
    if (buffer.size() == 0) {
      buffer.shrink_to_fit();
      stream.expires_after(s->options.idle_timeout);
      auto first = co_await stream.async_read_some(asio::buffer(first_bytes), tuple_awaitable);
      if (std::get<0>(first)) break;
      auto n = std::get<1>(first);
      asio::buffer_copy(buffer.prepare(n), asio::buffer(first_bytes, n));
      buffer.commit(n);
    }
    http::request_parser<http::string_body> parser;
    parser.body_limit(s->options.body_limit);
    parser.header_limit(s->options.header_limit);
    auto ec = co_await read_request(stream, buffer, parser, s->options.timeout);
    if (connection_gone(ec)) break;
    auto started = std::chrono::steady_clock::now();
    if (ec) {
      auto why = refusal_for(ec, s->options);
      auto res = error_response(why.status, s->make_error(why.status, why.code, why.message), 11);
      stream.expires_after(std::min(s->options.timeout, refusal_write_timeout));
      co_await http::async_write(stream, res, tuple_awaitable);
      if (s->log) {
        const auto& h = parser.get();
        s->log({std::string(h.method_string()), path_of(h.target()), why.status,
                std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - started),
                remote});
      }
      co_await drain(stream);
      co_return;
    }
    s->connections->busy(guard.slot());
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
