#pragma once
// Delivers a webhook's unread changes to its hook_url, at least once and in order: a
// delivery is recorded before it is sent, retried with the same webhook-id and body, and
// the next one waits until it is acknowledged (2xx). 410 pauses the webhook; so does an
// exhausted retry schedule.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "net/http_client.hpp"
#include "storage/delivery_store.hpp"
#include "storage/store.hpp"

namespace hookd::scheduler {

struct delivery_options {
  std::vector<double> retry_schedule;           // seconds before retry 1, 2, ...
  int unhealthy_after = 3;                      // consecutive failed attempts
  std::chrono::seconds max_retry_after{3600};   // cap on a receiver's Retry-After
  int max_deliveries_per_run = 100;
};

struct delivery_report {
  int delivered = 0;
  int failed = 0;
  std::optional<sys_time> retry_at;  // a delivery waits for a retry
  std::string paused;                // why the webhook was paused, if it was
};

class deliverer {
public:
  deliverer(net::http_client& client, storage::store& store, storage::delivery_store& deliveries,
            const clock& clk, delivery_options options);

  boost::asio::awaitable<delivery_report> deliver(std::string webhook_id);

private:
  boost::asio::awaitable<std::optional<storage::pending_delivery>> next_delivery(
      const webhook& hook, const std::string& secret, bool& idle);
  boost::asio::awaitable<bool> send(const webhook& hook, const storage::workspace& ws,
                                    storage::pending_delivery d, delivery_report& report);
  // WEBHOOK_UNHEALTHY / WEBHOOK_PAUSED to the workspace's notification URL, signed like a
  // delivery; best effort (one attempt).
  boost::asio::awaitable<void> notify(const webhook& hook, const storage::workspace& ws,
                                      std::string_view type, std::string_view reason);

  net::http_client& client_;
  storage::store& store_;
  storage::delivery_store& deliveries_;
  const clock& clock_;
  delivery_options options_;
};

}  // namespace hookd::scheduler
