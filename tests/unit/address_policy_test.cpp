// The SSRF guard: the special-purpose address table, allow lists, names refused before lookup,
// and every host spelling of an outbound URL recognised as the address it means.
#include "net/address_check.hpp"
#include "net/address_policy.hpp"
#include "net/http_client.hpp"

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

namespace ip = boost::asio::ip;
using hookd::net::address_policy;

namespace {

struct address_case {
  const char* address;
  const char* refusal;  // a part of the reason; nullptr: allowed
};

// Every special-purpose range, its edges, and public neighbours that must stay allowed.
constexpr address_case address_table[] = {
    {"127.0.0.1", "loopback"},
    {"127.255.255.254", "loopback"},
    {"10.0.0.1", "private"},
    {"10.255.255.255", "private"},
    {"172.16.0.1", "private"},
    {"172.31.255.255", "private"},
    {"192.168.1.1", "private"},
    {"100.64.0.1", "carrier-grade NAT"},
    {"100.127.255.255", "carrier-grade NAT"},
    {"169.254.1.1", "link-local"},
    {"169.254.169.254", "cloud metadata"},
    {"224.0.0.1", "multicast"},
    {"239.255.255.250", "multicast"},
    {"255.255.255.255", "broadcast"},
    {"0.0.0.0", "reserved"},
    {"0.1.2.3", "reserved"},
    {"192.0.0.8", "reserved"},
    {"192.0.2.1", "documentation"},
    {"198.51.100.7", "documentation"},
    {"203.0.113.9", "documentation"},
    {"198.18.0.1", "benchmarking"},
    {"198.19.255.255", "benchmarking"},
    {"240.0.0.1", "reserved"},
    {"254.1.2.3", "reserved"},
    {"::1", "loopback"},
    {"::", "unspecified"},
    {"fd00:ec2::254", "cloud metadata"},
    {"fc00::1", "unique local"},
    {"fd12:3456:789a::1", "unique local"},
    {"fec0::1", "site-local"},
    {"fe80::1", "link-local"},
    {"ff02::1", "multicast"},
    {"2001:db8::1", "documentation"},
    {"2001:db8:ffff::1", "documentation"},
    // IPv4-mapped and IPv4-compatible forms: judged by the IPv4 address inside.
    {"::ffff:127.0.0.1", "a loopback address (IPv4-mapped form of 127.0.0.1)"},
    {"::ffff:169.254.169.254", "cloud metadata"},
    {"::ffff:10.0.0.1", "private"},
    {"::127.0.0.1", "a loopback address (IPv4-compatible form of 127.0.0.1)"},
    {"::10.1.2.3", "private"},
    // NAT64 (64:ff9b::/96) and the local-use NAT64 prefix.
    {"64:ff9b::127.0.0.1", "a loopback address (NAT64 form of 127.0.0.1)"},
    {"64:ff9b::a9fe:a9fe", "a cloud metadata address (NAT64 form of 169.254.169.254)"},
    {"64:ff9b:1::1", "local-use NAT64"},
    // 6to4: the IPv4 address is bits 16-47.
    {"2002:7f00:1::1", "a loopback address (6to4 form of 127.0.0.1)"},
    {"2002:c0a8:101::1", "a private address (6to4 form of 192.168.1.1)"},
    // Teredo: the client's IPv4 address is the last 32 bits inverted.
    {"2001:0:4136:e378:8000:63bf:80ff:fffe", "a loopback address (Teredo form of 127.0.0.1)"},
    {"2001:0:4136:e378:8000:63bf:f5ff:fffe", "a private address (Teredo form of 10.0.0.1)"},
    // Public addresses, including each embedding form of a public IPv4 address.
    {"8.8.8.8", nullptr},
    {"1.1.1.1", nullptr},
    {"93.184.216.34", nullptr},
    {"100.63.255.255", nullptr},
    {"100.128.0.0", nullptr},
    {"172.15.255.255", nullptr},
    {"172.32.0.0", nullptr},
    {"192.169.0.1", nullptr},
    {"198.17.255.255", nullptr},
    {"198.20.0.0", nullptr},
    {"223.255.255.255", nullptr},
    {"2606:4700::1111", nullptr},
    {"2001:4860:4860::8888", nullptr},
    {"::ffff:8.8.8.8", nullptr},
    {"64:ff9b::8.8.8.8", nullptr},
    {"2002:808:808::1", nullptr},
    {"2001:0:4136:e378:8000:63bf:f7f7:f7f7", nullptr},
};

std::optional<std::string> refusal(const address_policy& p, const char* address) {
  return p.refusal(ip::make_address(address));
}

struct url_case {
  const char* url;
  const char* host;     // the canonical host; nullptr: refused
  const char* problem;  // a part of the reason when refused
};

// Host spellings: each one becomes the address the resolver would reach, or is refused.
constexpr url_case url_table[] = {
    {"http://127.0.0.1/", "127.0.0.1", nullptr},
    {"http://2130706433/", "127.0.0.1", nullptr},       // decimal
    {"http://0177.0.0.1/", "127.0.0.1", nullptr},       // octal
    {"http://017700000001/", "127.0.0.1", nullptr},     // octal, one part
    {"http://0x7f.0.0.1/", "127.0.0.1", nullptr},       // hex
    {"http://0x7f000001/", "127.0.0.1", nullptr},       // hex, one part
    {"http://0X7F.1/", "127.0.0.1", nullptr},           // hex, short
    {"http://127.1/", "127.0.0.1", nullptr},            // short
    {"http://127.0.1/", "127.0.0.1", nullptr},          // short
    {"http://0177.0.0.1./", "127.0.0.1", nullptr},      // trailing dot
    {"http://127.0.0.1./", nullptr, "not valid"},       // (Boost.URL misreads it: refused)
    {"http://0251.0376.0251.0376/latest/meta-data", "169.254.169.254", nullptr},
    {"http://0/", "0.0.0.0", nullptr},
    {"http://[::1]:8080/", "::1", nullptr},
    {"http://[::ffff:7f00:1]/", "::ffff:127.0.0.1", nullptr},
    {"http://[0:0:0:0:0:ffff:127.0.0.1]/", "::ffff:127.0.0.1", nullptr},
    {"http://LOCALHOST./", "localhost.", nullptr},       // judged by name_refusal
    {"http://Example.COM/", "example.com", nullptr},
    {"http://127.0.0.1#@good.com/", "127.0.0.1", nullptr},  // the fragment is not the host
    {"http://good.com#@127.0.0.1/", "good.com", nullptr},
    {"http://good.com?@127.0.0.1/", "good.com", nullptr},
    {"http://good.com@127.0.0.1/", nullptr, "credentials"},  // userinfo tricks
    {"http://good.com:80@127.0.0.1/", nullptr, "credentials"},
    {"http://127.0.0.1:80@good.com/", nullptr, "credentials"},
    {"http://@127.0.0.1/", nullptr, "credentials"},
    {"http://127.0.0.1\\@good.com/", nullptr, "not valid"},
    {"http://[fe80::1%25eth0]/", nullptr, "not valid"},  // IPv6 zone ids
    {"http://[fe80::1%eth0]/", nullptr, "not valid"},
    {"http://[v1.fe80::1]/", nullptr, "not valid"},       // IPvFuture
    {"http://%31%32%37.0.0.1/", nullptr, "percent-encoded"},
    {"http://loc%61lhost/", nullptr, "percent-encoded"},
    {"http://1.2.3.4.5/", nullptr, "not valid"},
    {"http://127.0.0.1.nip.io/", nullptr, "not valid"},  // a dotted quad then more labels
    {"http://1.2.3.4x:80/a", nullptr, "not valid"},
    {"http://[::1]x/", nullptr, "not valid"},
    {"http://1.2.3.4:80.5/", nullptr, "not valid"},
    {"http://01.2.3.4.5/", nullptr, "not a valid IPv4"},
    {"http://256.0.0.1/", nullptr, "not a valid IPv4"},
    {"http://4294967296/", nullptr, "not a valid IPv4"},
    {"http://0x100000000/", nullptr, "not a valid IPv4"},
    {"http://example.123/", nullptr, "not a valid IPv4"},
    {"http://exa_mple.com/", "exa_mple.com", nullptr},
    {"http://exa!mple.com/", nullptr, "not valid"},
    {"http://exa mple.com/", nullptr, "space"},
    {"ftp://example.com/", nullptr, "http or https"},
    {"javascript:alert(1)", nullptr, "http or https"},
    {"http:/example.com/", nullptr, "not absolute"},
    {"//example.com/", nullptr, "not"},
    {"http://:80/", nullptr, "no host"},
    {"http://example.com:0/", nullptr, "port"},
    {"http://example.com:65536/", nullptr, "port"},
    {"http://example.com:8x/", nullptr, "not valid"},
};

std::optional<std::string> check(const address_policy& p, std::string url) {
  boost::asio::io_context ioc;
  auto f = boost::asio::co_spawn(ioc, hookd::net::url_refusal(p, std::move(url)),
                                 boost::asio::use_future);
  ioc.run();
  return f.get();
}

}  // namespace

TEST_CASE("address policy: every special-purpose range is refused, public addresses are not") {
  address_policy none;
  for (const auto& c : address_table) {
    auto why = refusal(none, c.address);
    if (!c.refusal) {
      CHECK_MESSAGE(!why, std::string(c.address), " refused: ", why.value_or(""));
    } else {
      REQUIRE_MESSAGE(why, std::string(c.address), " allowed");
      CHECK_MESSAGE(why->find(c.refusal) != std::string::npos, std::string(c.address), ": ", *why);
    }
  }
}

TEST_CASE("address policy: embedded IPv4 addresses are found in every IPv6 form") {
  auto v4 = [](const char* a) { return hookd::net::embedded_v4(ip::make_address_v6(a)); };
  CHECK(v4("::ffff:1.2.3.4")->to_string() == "1.2.3.4");
  CHECK(v4("::1.2.3.4")->to_string() == "1.2.3.4");
  CHECK(v4("64:ff9b::1.2.3.4")->to_string() == "1.2.3.4");
  CHECK(v4("2002:102:304::")->to_string() == "1.2.3.4");
  CHECK(v4("2001:0:4136:e378:8000:63bf:fefd:fcfb")->to_string() == "1.2.3.4");
  CHECK(!v4("2606:4700::1111"));
  CHECK(!v4("64:ff9b:0:0:1::1.2.3.4"));  // not the well-known /96
}

TEST_CASE("address policy: \"true\" allows everything, a CIDR list only its ranges") {
  address_policy all("true");
  for (const auto& c : address_table) CHECK_MESSAGE(!refusal(all, c.address), std::string(c.address));

  address_policy some("10.0.0.0/8, fd00::/8,127.0.0.0/8");
  CHECK(!refusal(some, "10.1.2.3"));
  CHECK(!refusal(some, "::ffff:10.1.2.3"));      // mapped form of an allowed address
  CHECK(!refusal(some, "2002:a01:203::1"));      // 6to4 form of 10.1.2.3
  CHECK(!refusal(some, "fd12::1"));
  CHECK(!refusal(some, "127.0.0.1"));
  CHECK(refusal(some, "192.168.1.1"));
  CHECK(refusal(some, "172.16.0.1"));
  CHECK(refusal(some, "fc00::1"));               // fc00::/8 is not in fd00::/8
  CHECK(refusal(some, "169.254.169.254"));
  CHECK(refusal(some, "::1"));
  CHECK(!address_policy("false").refusal(ip::make_address("8.8.8.8")));
  CHECK(address_policy("false").refusal(ip::make_address("127.0.0.1")));

  for (const char* bad : {"10.0.0.0", "10.0.0.0/33", "x/8", "::/129", "10.0.0.0/", "10.0.0.0/8x"})
    CHECK_THROWS_AS_MESSAGE(address_policy{bad}, std::invalid_argument, std::string(bad));
}

TEST_CASE("address policy: localhost and cloud metadata names are refused before any lookup") {
  address_policy none;
  for (const char* name : {"localhost", "LOCALHOST.", "api.localhost", "metadata.google.internal",
                           "Metadata.Google.Internal.", "metadata.goog"})
    CHECK_MESSAGE(none.name_refusal(name), std::string(name));
  for (const char* name : {"example.com", "localhost.example.com", "metadata.google.internal.example.com"})
    CHECK_MESSAGE(!none.name_refusal(name), std::string(name));
  CHECK(none.name_refusal("localhost")->find("loopback") != std::string::npos);
  CHECK(none.name_refusal("metadata.google.internal")->find("metadata") != std::string::npos);
  // The names follow the allow lists, like the addresses they stand for.
  CHECK(!address_policy("true").name_refusal("metadata.google.internal"));
  CHECK(!address_policy("127.0.0.0/8").name_refusal("localhost"));
  CHECK(address_policy("127.0.0.0/8").name_refusal("metadata.google.internal"));
}

TEST_CASE("outbound URLs: every host spelling is the address it means, or refused") {
  for (const auto& c : url_table) {
    auto parsed = hookd::net::parse_url(c.url);
    if (c.host) {
      REQUIRE_MESSAGE(parsed, std::string(c.url), ": ", hookd::net::url_problem(c.url).value_or(""));
      CHECK_MESSAGE(parsed->host == c.host, std::string(c.url), " -> ", parsed->host);
    } else {
      CHECK_MESSAGE(!parsed, std::string(c.url), " -> ", parsed ? parsed->host : "");
      auto problem = hookd::net::url_problem(c.url);
      REQUIRE_MESSAGE(problem, std::string(c.url));
      CHECK_MESSAGE(problem->find(c.problem) != std::string::npos, std::string(c.url), ": ", *problem);
    }
  }
}

TEST_CASE("outbound URLs: scheme, port and target") {
  auto u = hookd::net::parse_url("HTTPS://Example.COM:0443/a/b?c=d#frag");
  REQUIRE(u);
  CHECK(u->tls);
  CHECK(u->port == "443");
  CHECK(u->target == "/a/b?c=d");
  CHECK(hookd::net::parse_url("http://example.com")->target == "/");
  CHECK(hookd::net::parse_url("http://example.com?x=1")->target == "/?x=1");
  CHECK(hookd::net::parse_url("http://example.com:")->port == "80");
  // Brackets and UTF-8 that real APIs put in next-page URLs are sent percent-encoded.
  CHECK(hookd::net::parse_url("http://example.com/a?created[gte]=1&q=\xc3\xa9")->target ==
        "/a?created%5Bgte%5D=1&q=%C3%A9");
  CHECK(hookd::net::parse_url("http://example.com/a%2Fb?x=%20")->target == "/a%2Fb?x=%20");
}

TEST_CASE("url_refusal: the create-time check judges what the URL would reach") {
  address_policy none;
  auto why = check(none, "http://2130706433:8080/contacts");
  REQUIRE(why);
  CHECK(*why == "is 127.0.0.1, a loopback address");
  CHECK(check(none, "http://0251.0376.0251.0376/")->find("cloud metadata") != std::string::npos);
  CHECK(check(none, "http://[::ffff:10.0.0.1]/")->find("private") != std::string::npos);
  CHECK(check(none, "http://localhost.:3000/")->find("loopback") != std::string::npos);
  CHECK(check(none, "http://metadata.google.internal/")->find("metadata") != std::string::npos);
  CHECK(check(none, "http://good.com@127.0.0.1/")->find("not a valid URL") != std::string::npos);
  CHECK(!check(none, "https://8.8.8.8/"));
  CHECK(!check(none, "https://[2606:4700::1111]/"));
  CHECK(!check(address_policy("true"), "http://127.1:3000/"));
}
