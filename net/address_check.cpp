#include "net/address_check.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>

#include "net/http_client.hpp"

namespace hookd::net {

namespace asio = boost::asio;

boost::asio::awaitable<std::optional<std::string>> url_refusal(const address_policy& policy,
                                                               std::string url) {
  auto parsed = parse_url(url);
  if (!parsed) co_return "is not a valid URL: " + url_problem(url).value_or("");
  if (auto why = policy.name_refusal(parsed->host))
    co_return fmt::format("is {}, {}", parsed->host, *why);
  boost::system::error_code ec;
  auto literal = asio::ip::make_address(parsed->host, ec);
  if (!ec) {
    if (auto why = policy.refusal(literal)) co_return fmt::format("is {}, {}", parsed->host, *why);
    co_return std::nullopt;
  }
  asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
  // No structured binding across co_await (g++ 12).
  auto resolved = co_await resolver.async_resolve(parsed->host, parsed->port,
                                                  asio::as_tuple(asio::use_awaitable));
  if (std::get<0>(resolved)) co_return std::nullopt;
  for (const auto& entry : std::get<1>(resolved)) {
    auto address = entry.endpoint().address();
    if (auto why = policy.refusal(address))
      co_return fmt::format("resolves to {}, {}", address.to_string(), *why);
  }
  co_return std::nullopt;
}

}  // namespace hookd::net
