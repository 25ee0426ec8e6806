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
  std::int64_t skipped_records = 0;  // unusable records the poll left out
  std::string skip_reason;           // the first of them
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
    // The poll lease the page was read under: the page is written only while it is held
    // (fencing: a poll whose lease lapsed and was taken over changes nothing). "" = unfenced.
    std::string poll_owner;
  };
  std::vector<std::unordered_map<std::string, std::string>> known_hashes_batch(
      pqxx::connection& c, const std::vector<known_request>& requests) const;
  std::vector<std::string> apply_changes_batch(pqxx::connection& c,
                                               const std::vector<apply_request>& requests) const;

  // Scheduling. Due times (next_run_at) come from the injected clock; lease expiries from
  // the database's (now()), so that instances whose clocks disagree never run a webhook twice.
  // Claims up to `limit` due webhooks (not paused, connection not paused, no live lease),
  // oldest slot first, with FOR UPDATE SKIP LOCKED so concurrent instances never share one.
  boost::asio::awaitable<std::vector<claimed_webhook>> claim_due(std::string owner, int limit,
                                                                 std::chrono::seconds lease);
  // The earliest next_run_at of a webhook that claim_due could take now, if any (a webhook
  // leased elsewhere is found again when its lease lapses: the claim loop never sleeps long).
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

  // The same as batch jobs (scheduler/run_batches.hpp): many feeds' leases in one statement,
  // many runs recorded in one transaction.
  struct lease_request {
    std::int64_t feed_id = 0;
    std::string owner;
    sys_time fresh_since{};
  };
  struct lease_result {
    feed_lease lease = feed_lease::busy;
    changes::feed_state state;  // when acquired; else only last_error (of the shared poll)
  };
  std::vector<lease_result> lease_feeds_batch(pqxx::connection& c, const std::vector<lease_request>& requests,
                                              std::chrono::seconds lease) const;
  struct finished_poll {
    std::int64_t feed_id = 0;
    std::string owner;  // the poll lease; "" = unfenced
    changes::poll_outcome outcome;
  };
  struct finished_run {
    claimed_webhook webhook;
    run_record run;
    sys_time next_slot_at{};
    sys_time next_run_at{};
  };
  // One feed group's results: its poll (if it polled) and its webhooks' runs.
  struct finish_request {
    std::optional<finished_poll> poll;
    std::vector<finished_run> runs;
    std::string owner;  // the webhooks' lease owner (the instance)
  };
  // "" per request when written, else why not. A batch that fails is retried request by
  // request, so that one bad request fails alone.
  std::vector<std::string> finish_batch(pqxx::connection& c, const std::vector<finish_request>& requests) const;

  // Extends the leases of `owner`'s runs still in flight (webhook ids) and of its polls in
  // flight (poll owners). Only those: a lease of a run whose bookkeeping failed lapses.
  boost::asio::awaitable<void> extend_leases(std::string owner, std::vector<std::string> webhook_ids,
                                             std::vector<std::string> poll_owners,
                                             std::chrono::seconds lease);
  // Releases every lease `owner` holds (shutdown).
  boost::asio::awaitable<void> release_leases(std::string owner);
  // Deletes change log entries every webhook of the feed has passed and older than `keep`.
  boost::asio::awaitable<std::int64_t> prune_log(std::chrono::seconds keep);
  // Run records and delivery attempts older than `keep`, and beyond the newest `per_webhook`
  // of each webhook. In batches, each its own short transaction. Returns the rows deleted.
  boost::asio::awaitable<std::int64_t> prune_history(std::chrono::seconds keep, int per_webhook);
  // Feeds no webhook uses: marked when found, removed (snapshot and log with them) once they
  // have been unused for `grace`. Returns the feeds removed.
  boost::asio::awaitable<std::int64_t> prune_feeds(std::chrono::seconds grace);

private:
  executor& db_;
  const clock& clock_;
};

// The canonical key of a filter set: its JSON with sorted keys.
std::string filter_key(const std::map<std::string, std::string>& filters);

// Puts the webhook on the feed of (connection, object type, pushed-down filters), creating
// the feed if needed, with its cursor at the feed's head. A feed no other webhook uses is
// replaced by a new one (its snapshot may be months old: the new webhook starts from a fresh
// baseline). Returns the feed id.
std::int64_t assign_feed(pqxx::work& tx, const std::string& webhook_id,
                         const std::string& connection_id, const std::string& object_type,
                         const std::map<std::string, std::string>& pushed_filters);

}  // namespace hookd::storage
