#pragma once
// The delivery engine's storage: every call serves many webhooks ("lanes") at once, so that
// database cost grows with batches, not with POSTs (DESIGN §2.1).
//
// The promises it keeps: a delivery is recorded (its id and exact body) before its first
// attempt, and a retry reads that same body; a webhook's deliveries are kept in `ord` order;
// the cursor only moves past an acknowledged delivery (or past entries with nothing to send);
// every write checks that this instance still holds the webhook's delivery lease.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/crypto.hpp"
#include "core/model.hpp"
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
  std::string initial_after;  // initial pages: the last record id of the page
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

// What a lane needs to decide its next POSTs, read in one snapshot.
struct lane_input {
  std::string webhook_id;
  std::optional<webhook> hook;  // nullopt: the webhook was deleted
  bool leased = false;          // this instance holds its delivery lease
  std::int64_t gen = 0;         // deliver_gen, read with the log
  delivery_target target;
  std::vector<pending_delivery> pending;      // recorded and not acknowledged, in order
  std::vector<delivery::log_entry> unread;    // nothing pending: log entries after the cursor
  bool unread_more = false;                   // the log holds more than `unread`
  std::vector<delivery::log_entry> snapshot;  // initial sync: snapshot records after initial_after
  bool snapshot_more = false;
  std::int64_t snapshot_head = 0;             // the feed's log head read with `snapshot`
};

// Everything one lane writes at one step; many lanes' writes share one transaction.
struct lane_write {
  struct failure {
    pending_delivery delivery;
    attempt_record attempt;
    std::optional<sys_time> next_attempt_at;  // none: the webhook is paused
    std::string pause_reason;
  };
  struct release_lease {
    bool idle = false;                  // caught up: deliver_at cleared unless deliver_gen moved
    std::int64_t gen = 0;
    std::optional<sys_time> deliver_at; // not idle: when to look again (a retry), else now
  };
  std::string webhook_id;
  std::vector<pending_delivery> record;          // recorded before their first attempt, in order
  std::optional<std::int64_t> skip_to;           // entries with nothing to send: the cursor moves
  std::vector<std::pair<pending_delivery, attempt_record>> delivered;  // acknowledged (2xx)
  std::optional<failure> failed;
  std::optional<release_lease> release;
};

struct lane_write_result {
  bool held = false;             // the lease was still this instance's: the write happened
  int consecutive_failures = 0;  // after a failure
};

class delivery_store {
public:
  delivery_store(executor& db, const crypto::cipher& cipher, const clock& clk, std::string owner,
                 int unhealthy_after)
      : db_(db), cipher_(cipher), clock_(clk), owner_(std::move(owner)), unhealthy_after_(unhealthy_after) {}

  executor& db() { return db_; }
  const std::string& owner() const { return owner_; }

  // Takes the delivery lease of up to `limit` webhooks whose deliver_at has come (not paused,
  // with a hook_url, no live lease elsewhere), oldest first, FOR UPDATE SKIP LOCKED.
  boost::asio::awaitable<std::vector<std::string>> claim(int limit, std::chrono::seconds lease);
  // The earliest deliver_at another claim could take, if any.
  boost::asio::awaitable<std::optional<sys_time>> next_due();
  // Extends the leases of the webhooks this instance's lanes serve (not of lanes that died).
  boost::asio::awaitable<void> extend_leases(std::vector<std::string> ids, std::chrono::seconds lease);
  boost::asio::awaitable<void> release_leases();

  // Blocking batch jobs, run by the engine's batchers on a database thread.
  // `ahead`: POSTs a lane wants to prepare; the log is read for that many pages at most.
  std::vector<lane_input> read_lanes(pqxx::connection& c, const std::vector<std::string>& ids,
                                     int ahead) const;
  std::vector<lane_write_result> write_lanes(pqxx::connection& c,
                                             const std::vector<lane_write>& writes) const;

private:
  executor& db_;
  const crypto::cipher& cipher_;
  const clock& clock_;
  std::string owner_;
  int unhealthy_after_;
};

}  // namespace hookd::storage
