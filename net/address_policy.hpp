#pragma once
// The SSRF guard: which addresses hookd may connect to. One table of special-purpose addresses
// (loopback, private, CGNAT, link-local, cloud metadata, multicast, broadcast, reserved and
// documentation ranges, and the IPv6 forms that embed an IPv4 address: mapped, compatible,
// NAT64, 6to4, Teredo) is refused unless an allow list opens it ("true", or CIDR ranges).
// Deliveries and sources each have their own policy built from this class.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace hookd::net {

// Why an address is special-purpose ("a loopback address"), or nullopt for a public address.
// IPv6 forms that embed an IPv4 address are judged by the embedded address too.
std::optional<std::string> special_address(const boost::asio::ip::address& a);

// The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo client).
std::optional<boost::asio::ip::address_v4> embedded_v4(const boost::asio::ip::address_v6& a);

class address_policy {
public:
  // `allow`: "" (nothing special allowed), "true" (everything), or "cidr,cidr,...".
  // Throws std::invalid_argument for a malformed list.
  explicit address_policy(std::string_view allow = "");

  // nullopt when allowed, else why not (e.g. "a private address").
  std::optional<std::string> refusal(const boost::asio::ip::address& a) const;
  bool allowed(const boost::asio::ip::address& a) const { return !refusal(a); }

  // Names refused before any lookup: a resolver (or /etc/hosts) may answer anything for them,
  // so they are judged by what they stand for: localhost (RFC 6761) and cloud metadata names.
  std::optional<std::string> name_refusal(std::string_view host) const;

private:
  struct range {
    boost::asio::ip::address network;
    unsigned prefix;
  };
  bool allowed_by_list(const boost::asio::ip::address& a) const;

  bool allow_all_ = false;
  std::vector<range> allowed_;
};

}  // namespace hookd::net
