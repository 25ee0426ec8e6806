#pragma once
// The SSRF guard where a URL is accepted (API create/update): where the URL would connect to,
// judged now, for a clear 400 naming the field. Every connect checks again after its own
// resolution (DNS may change between the two); this check does not replace that one.
#include <optional>
#include <string>

#include <boost/asio/awaitable.hpp>

#include "net/address_policy.hpp"

namespace hookd::net {

// Why `policy` refuses `url`, as a predicate for "<field> ...": "is not a valid URL: ...",
// "is 127.0.0.1, a loopback address", "resolves to 10.0.0.7, a private address", or nullopt.
// A host that does not resolve now cannot be judged and passes.
boost::asio::awaitable<std::optional<std::string>> url_refusal(const address_policy& policy,
                                                               std::string url);

}  // namespace hookd::net
