#pragma once
// Deliveries: recorded before they are sent (the body is fixed then, so a retry sends the
// same bytes under the same webhook-id), one outstanding per webhook, and the cursor moves
// only when one is acknowledged.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/time.hpp"
#include "delivery/batch.hpp"
#include "storage/executor.hpp"

namespace hookd::storage {

struct pending_delivery {
  std::string id;
  std::int64_t seq_to = 0;
  std::string type;
  std::string body;
  int records = 0;
  int attempts = 0;
  sys_time next_attempt_at{};
  std::string initial_after;  // INITIAL-PARTIAL: the last record id of the page
  std::int64_t snapshot_head = 0;  // initial pages: the log head read with the page
};

// An initial-sync page already delivered: records with ids up to `after` (and above the
// previous page's) were sent as of log sequence `head`.
struct initial_page {
  std::string after;
  std::int64_t head = 0;
};

struct delivery_target {
  std::int64_t feed_id = 0;
  std::int64_t cursor_seq = 0;
  std::map<std::string, std::string> client_filters;
  int consecutive_failures = 0;
  bool initial_sync_done = true;
  std::string initial_after;  // initial sync: the last record id already sent
  bool feed_ready = false;    // the feed's baseline is complete (its snapshot is whole)
  std::vector<initial_page> initial_pages;
};

struct attempt_record {
  int attempt = 0;
  std::optional<unsigned> status;
  int latency_ms = 0;
  std::string error;
};

class delivery_store {
public:
  delivery_store(executor& db, const clock& clk) : db_(db), clock_(clk) {}

  boost::asio::awaitable<delivery_target> target(std::string webhook_id);
  boost::asio::awaitable<std::optional<pending_delivery>> pending(std::string webhook_id);
  // Change log entries after the cursor, in order.
  boost::asio::awaitable<std::vector<delivery::log_entry>> unread(std::int64_t feed_id,
                                                                  std::int64_t cursor, int limit);
  // The snapshot's records after `after_id` (id order), for the initial sync, and the
  // feed's log head read in the same snapshot.
  boost::asio::awaitable<std::pair<std::vector<delivery::log_entry>, std::int64_t>> snapshot_page(
      std::int64_t feed_id, std::string after_id, int limit);

  // Records a delivery before it is sent.
  boost::asio::awaitable<pending_delivery> record(std::string webhook_id, pending_delivery d);
  // No record of the webhook's event among the unread entries: skip them.
  boost::asio::awaitable<void> advance_cursor(std::string webhook_id, std::int64_t seq_to);
  // A 2xx: the delivery is done, the cursor moves, the webhook is healthy again.
  // An INITIAL-PARTIAL page records `initial_after`; INITIAL-COMPLETE ends the initial sync.
  boost::asio::awaitable<void> delivered(std::string webhook_id, pending_delivery d,
                                         attempt_record a);
  // A failed attempt: recorded; retried at next_attempt_at, or the webhook is paused.
  boost::asio::awaitable<void> failed(std::string webhook_id, pending_delivery d, attempt_record a,
                                      std::optional<sys_time> next_attempt_at,
                                      std::string pause_reason, int unhealthy_after);

private:
  executor& db_;
  const clock& clock_;
};

}  // namespace hookd::storage
