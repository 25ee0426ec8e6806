#pragma once
// Feeds, their snapshots and change logs (changes::feed_repository), and the scheduling
// queries: claiming due webhooks under a lease, feed poll leases, and recording runs.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "changes/feed_repository.hpp"
#include "core/time.hpp"
#include "storage/executor.hpp"

namespace hookd::storage {

struct claimed_webhook {
  std::string id;
  std::string workspace_id;
  std::string connection_id;
  std::string object_type;
  std::string event;
  std::int64_t feed_id = 0;  // 0: not assigned yet
  sys_time scheduled_for{};  // next_run_at when claimed (a poll slot or a delivery retry)
  sys_time next_slot_at{};   // the poll slot: the feed is polled when it has come
  double interval_minutes = 60;
  bool triggered = false;    // by the API: polls made before the trigger do not count as fresh
};

struct run_record {
  std::string status;  // ok | incomplete | failed | paused
  sys_time started_at{};
  sys_time finished_at{};
  bool polled = false;
  bool full_scan = false;
  std::int64_t records_read = 0;
  std::int64_t changes = 0;
  int requests = 0;
  std::string error;
};

enum class feed_lease { acquired, fresh, busy };

class feed_store final : public changes::feed_repository {
public:
  feed_store(executor& db, const clock& clk) : db_(db), clock_(clk) {}
  executor& db() { return db_; }

  // feed_repository
  boost::asio::awaitable<std::unordered_map<std::string, std::string>> known_hashes(
      std::int64_t feed_id, std::vector<std::string> ids) override;
  boost::asio::awaitable<void> apply_changes(std::int64_t feed_id,
                                             std::vector<changes::change> changes,
                                             bool baseline) override;
  boost::asio::awaitable<std::vector<std::string>> snapshot_ids(std::int64_t feed_id) override;
  boost::asio::awaitable<void> finish_poll(std::int64_t feed_id,
                                           changes::poll_outcome outcome) override;

  // The same two page operations as batch jobs, for many pages of many feeds in one round
  // trip / one transaction (scheduler/batched_feeds.hpp). A page whose write fails (its feed
  // was deleted meanwhile) fails alone: the result is its error message, "" when written.
  struct known_request {
    std::int64_t feed_id = 0;
    std::vector<std::string> ids;
  };
  struct apply_request {
    std::int64_t feed_id = 0;
    std::vector<changes::change> changes;
    bool baseline = false;
  };
  std::vector<std::unordered_map<std::string, std::string>> known_hashes_batch(
      pqxx::connection& c, const std::vector<known_request>& requests) const;
  std::vector<std::string> apply_changes_batch(pqxx::connection& c,
                                               const std::vector<apply_request>& requests) const;

  // Scheduling.
  // Claims up to `limit` due webhooks (not paused, connection not paused, no live lease),
  // oldest slot first, with FOR UPDATE SKIP LOCKED so concurrent instances never share one.
  boost::asio::awaitable<std::vector<claimed_webhook>> claim_due(std::string owner, int limit,
                                                                 std::chrono::seconds lease);
  // The earliest next_run_at of a runnable webhook, if any.
  boost::asio::awaitable<std::optional<sys_time>> next_due();
  // Makes sure the webhook has a feed (webhooks created before feeds existed); returns it.
  boost::asio::awaitable<std::int64_t> ensure_feed(std::string webhook_id);
  // Takes the feed's poll lease unless it was polled at or after `fresh_since` (then
  // `fresh`) or another instance holds the lease (`busy`).
  boost::asio::awaitable<std::pair<feed_lease, changes::feed_state>> lease_feed(
      std::int64_t feed_id, std::string owner, sys_time fresh_since, std::chrono::seconds lease);
  // Records the run, sets checked_at, runs, next_run_at and releases the lease (only if
  // `owner` still holds it).
  boost::asio::awaitable<void> finish_run(claimed_webhook w, std::string owner, run_record run,
                                          sys_time next_slot_at, sys_time next_run_at);
  // Extends the leases `owner` holds (long runs).
  boost::asio::awaitable<void> extend_leases(std::string owner, std::chrono::seconds lease);
  // Releases every lease `owner` holds (shutdown).
  boost::asio::awaitable<void> release_leases(std::string owner);
  // Deletes change log entries every webhook of the feed has passed and older than `keep`.
  boost::asio::awaitable<std::int64_t> prune_log(std::chrono::seconds keep);

private:
  executor& db_;
  const clock& clock_;
};

// The canonical key of a filter set: its JSON with sorted keys.
std::string filter_key(const std::map<std::string, std::string>& filters);

// Puts the webhook on the feed of (connection, object type, pushed-down filters), creating
// the feed if needed, with its cursor at the feed's head. Returns the feed id.
std::int64_t assign_feed(pqxx::work& tx, const std::string& webhook_id,
                         const std::string& connection_id, const std::string& object_type,
                         const std::map<std::string, std::string>& pushed_filters);

}  // namespace hookd::storage
