#include "net/address_policy.hpp"

#include <stdexcept>

#include <fmt/format.h>

namespace hookd::net {

namespace ip = boost::asio::ip;

namespace {

template <std::size_t N>
bool in_prefix(const std::array<unsigned char, N>& a, const std::array<unsigned char, N>& net,
               unsigned prefix) {
  for (std::size_t i = 0; i < N && prefix > 0; ++i) {
    unsigned bits = std::min(prefix, 8u);
    unsigned char mask = static_cast<unsigned char>(0xff << (8 - bits));
    if ((a[i] & mask) != (net[i] & mask)) return false;
    prefix -= bits;
  }
  return true;
}

bool contains(const ip::address& net, unsigned prefix, const ip::address& a) {
  if (net.is_v4() && a.is_v4()) return in_prefix(a.to_v4().to_bytes(), net.to_v4().to_bytes(), prefix);
  if (net.is_v6() && a.is_v6()) return in_prefix(a.to_v6().to_bytes(), net.to_v6().to_bytes(), prefix);
  return false;
}

struct special_range {
  const char* network;
  unsigned prefix;
  const char* what;
};

constexpr special_range special[] = {
    {"169.254.169.254", 32, "a cloud metadata address"},
    {"fd00:ec2::254", 128, "a cloud metadata address"},
    {"0.0.0.0", 8, "a reserved address"},
    {"10.0.0.0", 8, "a private address"},
    {"100.64.0.0", 10, "a private (carrier-grade NAT) address"},
    {"127.0.0.0", 8, "a loopback address"},
    {"169.254.0.0", 16, "a link-local address"},
    {"172.16.0.0", 12, "a private address"},
    {"192.0.0.0", 24, "a reserved address"},
    {"192.168.0.0", 16, "a private address"},
    {"198.18.0.0", 15, "a reserved (benchmarking) address"},
    {"224.0.0.0", 4, "a multicast address"},
    {"240.0.0.0", 4, "a reserved address"},
    {"::", 128, "the unspecified address"},
    {"::1", 128, "a loopback address"},
    {"fc00::", 7, "a private (unique local) address"},
    {"fe80::", 10, "a link-local address"},
    {"ff00::", 8, "a multicast address"},
};

ip::address unmapped(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return ip::make_address_v4(ip::v4_mapped, a.to_v6());
  return a;
}

}  // namespace

address_policy::address_policy(std::string_view allow) {
  if (allow.empty() || allow == "false") return;
  if (allow == "true") {
    allow_all_ = true;
    return;
  }
  while (!allow.empty()) {
    auto comma = allow.find(',');
    auto item = allow.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    auto slash = item.find('/');
    if (slash == std::string_view::npos) throw std::invalid_argument(fmt::format("'{}' is not a CIDR range", item));
    boost::system::error_code ec;
    auto network = ip::make_address(std::string(item.substr(0, slash)), ec);
    if (ec) throw std::invalid_argument(fmt::format("'{}' is not a CIDR range", item));
    unsigned prefix = static_cast<unsigned>(std::stoul(std::string(item.substr(slash + 1))));
    allowed_.push_back({network, prefix});
    if (comma == std::string_view::npos) break;
    allow.remove_prefix(comma + 1);
  }
}

std::optional<std::string> address_policy::refusal(const ip::address& raw) const {
  if (allow_all_) return std::nullopt;
  auto a = unmapped(raw);
  for (const auto& r : allowed_)
    if (contains(r.network, r.prefix, a)) return std::nullopt;
  for (const auto& s : special)
    if (contains(ip::make_address(s.network), s.prefix, a)) return std::string(s.what);
  return std::nullopt;
}

}  // namespace hookd::net
