#pragma once
// The SSRF guard: which destination addresses hookd may connect to for subscribers.
// Loopback, private, link-local (with cloud metadata), multicast and reserved addresses are
// refused unless the configuration allows them ("true", or a list of CIDR ranges).
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace hookd::net {

class address_policy {
public:
  // `allow`: "" (nothing private allowed), "true" (everything), or "cidr,cidr,...".
  // Throws std::invalid_argument for a malformed list.
  explicit address_policy(std::string_view allow = "");

  // nullopt when allowed, else why not (e.g. "a private address").
  std::optional<std::string> refusal(const boost::asio::ip::address& a) const;
  bool allowed(const boost::asio::ip::address& a) const { return !refusal(a); }

private:
  struct range {
    boost::asio::ip::address network;
    unsigned prefix;
  };
  bool allow_all_ = false;
  std::vector<range> allowed_;
};

}  // namespace hookd::net
