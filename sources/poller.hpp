#pragma once
// The source poller: reads every record of one (connection, object type) through the
// integration definition (auth, pagination, incremental parameter, tombstones, pushed-down
// filters, mapping), page by page, and says whether the scan was complete. A scan is either
// complete or explicitly incomplete with an error naming the request: a caller can never
// mistake a partial scan for a full one.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "core/time.hpp"
#include "net/http_client.hpp"
#include "sources/integration_registry.hpp"

namespace hookd::sources {

struct mapped_record {
  std::string id;
  std::string json;  // the Unified record with "raw"
  bool deleted = false;  // a tombstone
  std::optional<sys_time> updated_at;  // from the definition's updated_at pointer
  std::string hash;  // the change-detection hash when the mapping computed it ("": not yet)
};

struct scan_request {
  const integration* definition = nullptr;
  const integration_object* object = nullptr;
  std::string connection_id;
  std::string auth_json = "{}";
  std::optional<sys_time> since;  // incremental: only records changed since (when supported)
  std::map<std::string, std::string> filters;  // Unified filter key -> value
};

struct scan_result {
  bool complete = false;
  bool incremental = false;  // the since parameter was sent
  std::string error;         // why the scan is incomplete
  std::optional<unsigned> auth_failure;  // 401/403 from the source
  int pages = 0;
  int requests = 0;
  std::size_t records = 0;
  // Records that cannot be used (no id, an id with a NUL, not an object) are left out and
  // counted; the scan stays complete, so one bad record cannot stop delete detection.
  std::size_t skipped = 0;
  std::string skip_reason;  // the first one, e.g. "GET /contacts?...: record 3 on page 1 has no id at /id"
  std::chrono::milliseconds duration{};
};

// What the poller reports about connections; the daemon records it in the database.
class connection_events {
public:
  virtual ~connection_events() = default;
  virtual boost::asio::awaitable<void> unhealthy(std::string connection_id, unsigned status) = 0;
  virtual boost::asio::awaitable<void> healthy(std::string connection_id) = 0;
  // New OAuth2 tokens, to be sealed into the connection's auth in place of `based_on` (the auth
  // the refresh started from); false when the auth changed meanwhile and was kept.
  virtual boost::asio::awaitable<bool> auth_refreshed(std::string connection_id, std::string based_on,
                                                      std::string auth_json) = 0;
};

struct poller_options {
  int max_retries = 3;                                // 5xx and network errors, per request
  std::chrono::milliseconds backoff{500};             // doubled at each retry
  std::chrono::milliseconds max_backoff{10'000};
  std::chrono::seconds max_retry_after{120};          // cap on a source's Retry-After
  int max_rate_limit_waits = 10;                      // 429s honoured per request
  int max_pages = 100'000;
};

// Receives each page's mapped records, in order. Returning false stops the scan (incomplete).
using page_sink = std::function<boost::asio::awaitable<bool>(std::vector<mapped_record>)>;

class poller {
public:
  poller(net::http_client& client, connection_events& events, const clock& clk,
         poller_options options = {});
  ~poller();

  boost::asio::awaitable<scan_result> scan(scan_request req, page_sink sink);

  // Implementation details, declared here for the helpers in poller.cpp.
  struct budget;
  struct scan_state;

private:
  std::shared_ptr<budget> budget_for(const scan_request& req);
  boost::asio::awaitable<std::optional<net::client_response>> fetch(scan_state& st,
                                                                     std::string url);
  boost::asio::awaitable<std::optional<net::client_response>> send_with_retries(
      scan_state& st, const net::client_request& req);
  boost::asio::awaitable<bool> refresh_token(scan_state& st);
  boost::asio::awaitable<bool> listing(scan_state& st, bool tombstones_only);

  net::http_client& client_;
  connection_events& events_;
  const clock& clock_;
  poller_options options_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<budget>> budgets_;      // per connection
  // Per connection (OAuth2): a refreshed access token, valid only with the auth it was refreshed
  // from or the auth it was saved into (fingerprints); a connection whose auth changed since
  // (PATCHed, on any instance) misses it.
  struct cached_token {
    std::string from, into, token;
  };
  std::map<std::string, cached_token> access_tokens_;
};

// RFC 8288: the URL of rel="next" in a Link header, or empty.
std::string link_next(std::string_view link_header);
// Seconds to wait from a Retry-After value (delta-seconds or HTTP-date), if parseable.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value, sys_time now);
// Percent-encodes a query component.
std::string url_encode(std::string_view s);

}  // namespace hookd::sources
