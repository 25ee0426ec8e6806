#include "net/address_policy.hpp"

#include <algorithm>
#include <array>
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

// Most specific first: the first match names the reason. IANA's special-purpose registries
// (RFC 6890 and successors), with everything that is not globally reachable refused.
constexpr special_range special_v4[] = {
    {"169.254.169.254", 32, "a cloud metadata address"},
    {"255.255.255.255", 32, "the broadcast address"},
    {"0.0.0.0", 8, "a reserved address (this network)"},
    {"10.0.0.0", 8, "a private address"},
    {"100.64.0.0", 10, "a private (carrier-grade NAT) address"},
    {"127.0.0.0", 8, "a loopback address"},
    {"169.254.0.0", 16, "a link-local address"},
    {"172.16.0.0", 12, "a private address"},
    {"192.0.0.0", 24, "a reserved (IETF protocol assignments) address"},
    {"192.0.2.0", 24, "a documentation address"},
    {"192.88.99.0", 24, "a reserved (6to4 relay anycast) address"},
    {"192.168.0.0", 16, "a private address"},
    {"198.18.0.0", 15, "a reserved (benchmarking) address"},
    {"198.51.100.0", 24, "a documentation address"},
    {"203.0.113.0", 24, "a documentation address"},
    {"224.0.0.0", 4, "a multicast address"},
    {"240.0.0.0", 4, "a reserved address"},
};

// IPv6 ranges judged by themselves; the IPv4-embedding ones are in embedded_v4().
constexpr special_range special_v6[] = {
    {"fd00:ec2::254", 128, "a cloud metadata address"},
    {"::", 128, "the unspecified address"},
    {"::1", 128, "a loopback address"},
    {"64:ff9b:1::", 48, "a reserved (local-use NAT64) address"},
    {"100::", 64, "a reserved (discard-only) address"},
    {"2001:2::", 48, "a reserved (benchmarking) address"},
    {"2001:10::", 28, "a reserved (ORCHID) address"},
    {"2001:20::", 28, "a reserved (ORCHIDv2) address"},
    {"2001:db8::", 32, "a documentation address"},
    {"3fff::", 20, "a documentation address"},
    {"fc00::", 7, "a private (unique local) address"},
    {"fe80::", 10, "a link-local address"},
    {"fec0::", 10, "a site-local address"},
    {"ff00::", 8, "a multicast address"},
};

struct parsed_range {
  ip::address network;
  unsigned prefix;
  const char* what;
};

template <std::size_t N>
std::vector<parsed_range> parse_table(const special_range (&table)[N]) {
  std::vector<parsed_range> out;
  for (const auto& s : table) out.push_back({ip::make_address(s.network), s.prefix, s.what});
  return out;
}

// Parsed once: refusal() runs at every connect.
const std::vector<parsed_range>& table_v4() {
  static const auto table = parse_table(special_v4);
  return table;
}

const std::vector<parsed_range>& table_v6() {
  static const auto table = parse_table(special_v6);
  return table;
}

std::optional<std::string> lookup(const std::vector<parsed_range>& table, const ip::address& a) {
  for (const auto& r : table)
    if (contains(r.network, r.prefix, a)) return std::string(r.what);
  return std::nullopt;
}

ip::address_v4 v4_at(const ip::address_v6::bytes_type& b, std::size_t offset, bool inverted) {
  ip::address_v4::bytes_type out;
  for (std::size_t i = 0; i < 4; ++i)
    out[i] = static_cast<unsigned char>(inverted ? ~b[offset + i] : b[offset + i]);
  return ip::address_v4(out);
}

bool starts_with(const ip::address_v6::bytes_type& b, std::initializer_list<unsigned char> prefix) {
  return std::equal(prefix.begin(), prefix.end(), b.begin());
}

std::string embedded_form(const ip::address_v6& a) {
  auto b = a.to_bytes();
  if (a.is_v4_mapped()) return "IPv4-mapped";
  if (starts_with(b, {0x20, 0x02})) return "6to4";
  if (starts_with(b, {0x20, 0x01, 0x00, 0x00})) return "Teredo";
  if (starts_with(b, {0x00, 0x64, 0xff, 0x9b})) return "NAT64";
  return "IPv4-compatible";
}

}  // namespace

std::optional<ip::address_v4> embedded_v4(const ip::address_v6& a) {
  auto b = a.to_bytes();
  bool first_96_zero = std::all_of(b.begin(), b.begin() + 12, [](auto x) { return x == 0; });
  if (a.is_v4_mapped()) return v4_at(b, 12, false);               // ::ffff:0:0/96
  if (first_96_zero) return v4_at(b, 12, false);                  // ::/96 (deprecated compatible)
  if (starts_with(b, {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0}))
    return v4_at(b, 12, false);                                   // 64:ff9b::/96 (RFC 6052)
  if (starts_with(b, {0x20, 0x02})) return v4_at(b, 2, false);    // 2002::/16, bits 16-47
  // 2001::/32: the client's address is the last 32 bits, inverted (RFC 4380 4).
  if (starts_with(b, {0x20, 0x01, 0x00, 0x00})) return v4_at(b, 12, true);
  return std::nullopt;
}

std::optional<std::string> special_address(const ip::address& a) {
  if (a.is_v4()) return lookup(table_v4(), a);
  // :: and ::1 sit inside ::/96 but are not IPv4 carriers: the v6 table answers first.
  if (auto why = lookup(table_v6(), a)) return why;
  auto v4 = embedded_v4(a.to_v6());
  if (!v4) return std::nullopt;
  // A gateway would forward to the embedded address, so it decides.
  if (auto why = lookup(table_v4(), ip::address(*v4)))
    return fmt::format("{} ({} form of {})", *why, embedded_form(a.to_v6()), v4->to_string());
  return std::nullopt;
}

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
    auto bad = [&] { return std::invalid_argument(fmt::format("'{}' is not a CIDR range", item)); };
    auto slash = item.find('/');
    if (slash == std::string_view::npos) throw bad();
    boost::system::error_code ec;
    auto network = ip::make_address(std::string(item.substr(0, slash)), ec);
    auto bits = item.substr(slash + 1);
    if (ec || bits.empty() || bits.size() > 3 ||
        !std::all_of(bits.begin(), bits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      throw bad();
    unsigned prefix = static_cast<unsigned>(std::stoul(std::string(bits)));
    if (prefix > (network.is_v4() ? 32u : 128u)) throw bad();
    allowed_.push_back({network, prefix});
    if (comma == std::string_view::npos) break;
    allow.remove_prefix(comma + 1);
  }
}

// A range allows an address it contains, and an IPv6 address whose embedded IPv4 it contains
// (the operator opened that IPv4 network, whichever way it is spelled).
bool address_policy::allowed_by_list(const ip::address& a) const {
  std::optional<ip::address> v4;
  if (a.is_v6())
    if (auto e = embedded_v4(a.to_v6())) v4 = ip::address(*e);
  for (const auto& r : allowed_)
    if (contains(r.network, r.prefix, a) || (v4 && contains(r.network, r.prefix, *v4)))
      return true;
  return false;
}

std::optional<std::string> address_policy::refusal(const ip::address& a) const {
  if (allow_all_ || allowed_by_list(a)) return std::nullopt;
  return special_address(a);
}

std::optional<std::string> address_policy::name_refusal(std::string_view host) const {
  std::string name(host);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (name.ends_with(".")) name.pop_back();  // "localhost." is the same name
  if (name == "localhost" || name.ends_with(".localhost")) {
    auto why = refusal(ip::make_address("127.0.0.1"));
    if (why) return "a name for " + *why;
  }
  if (name == "metadata.google.internal" || name == "metadata.goog") {
    auto why = refusal(ip::make_address("169.254.169.254"));
    if (why) return "a name for " + *why;
  }
  return std::nullopt;
}

}  // namespace hookd::net
