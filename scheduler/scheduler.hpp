#pragma once
// The scheduler: claims due webhooks from PostgreSQL in batches under a lease (so any
// number of instances can share one database), runs the webhooks of one feed together (one
// poll of the feed unless a fresh poll is shared, their runs recorded with it) and computes
// the next slot without drift. Its bookkeeping goes through group commit (run_batches.hpp).
// It sleeps until the next due time; a trigger wakes it at once through LISTEN/NOTIFY.
// Delivery is the delivery engine's (delivery_engine.hpp): a poll that logs changes marks
// the feed's webhooks (deliver_at) and calls `changes_logged`.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "scheduler/batched_feeds.hpp"
#include "scheduler/feed_poll.hpp"
#include "scheduler/run_batches.hpp"
#include "sources/integration_registry.hpp"
#include "sources/poller.hpp"
#include "storage/feed_store.hpp"
#include "storage/store.hpp"

namespace hookd::scheduler {

struct scheduler_options {
  std::string owner;                           // this instance's lease owner id
  int batch = 100;                             // webhooks claimed per query
  int max_concurrent_runs = 2048;
  std::chrono::seconds lease{60};              // a dead instance's runs are taken over after this
  std::chrono::seconds freshness{30};          // a feed polled this recently is not polled again
  std::chrono::milliseconds idle_wait{1000};   // longest sleep between claims
  // Shortest gap between two claims that were not full: what comes due meanwhile is claimed
  // together (a batch per gap, not a claim per webhook) at the cost of this much lag.
  std::chrono::milliseconds claim_gap{20};
  feed_poll_options feed;
};

// The next slot after `scheduled` that is after `now`: scheduled + k * interval (missed
// slots are skipped, the phase never drifts).
sys_time next_slot(sys_time scheduled, std::chrono::milliseconds interval, sys_time now);

class scheduler {
public:
  scheduler(boost::asio::io_context& ioc, storage::store& store, storage::feed_store& feeds,
            run_batches& batches, sources::poller& poller,
            const sources::integration_registry& integrations, const clock& clk,
            scheduler_options options, std::function<void()> changes_logged = {});
  ~scheduler();

  void start();
  // Stops claiming, waits for the runs in flight up to `deadline`, releases leases.
  boost::asio::awaitable<void> stop(std::chrono::seconds deadline);
  // Claims now (a trigger or a notification).
  void wake();
  int in_flight() const { return in_flight_.load(); }
  // Called (on the listener thread) when any instance updated or deleted a webhook.
  void on_webhook_changed(std::function<void(const std::string&)> f) { webhook_changed_ = std::move(f); }

private:
  boost::asio::awaitable<void> claim_loop();
  boost::asio::awaitable<void> lease_keeper();
  // The claimed webhooks of one feed (or one webhook without a feed yet).
  boost::asio::awaitable<void> run_group(std::vector<storage::claimed_webhook> group);
  boost::asio::awaitable<std::optional<storage::feed_store::finished_poll>> poll_if_due(
      const storage::claimed_webhook& w, std::int64_t feed_id, sys_time fresh_since,
      storage::run_record& run);
  void listen_loop();
  void track(const std::vector<storage::claimed_webhook>& group, bool running);
  void track_poll(const std::string& poll_owner, bool polling);

  boost::asio::io_context& ioc_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  bool wake_pending_ = false;  // on strand_: a wake that came while no sleep was under way
  storage::store& store_;
  storage::feed_store& feeds_;
  batched_feeds pages_;  // the polls' page reads and writes, group-committed
  run_batches& batches_;  // leases, connection reads and run records, group-committed
  sources::poller& poller_;
  std::function<void()> changes_logged_;
  std::function<void(const std::string&)> webhook_changed_;
  const sources::integration_registry& integrations_;
  const clock& clock_;
  scheduler_options options_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> stopping_{false};
  // What is in flight, so that only its leases are renewed.
  std::mutex in_flight_mutex_;
  std::unordered_set<std::string> running_webhooks_;
  std::unordered_set<std::string> running_polls_;
  std::thread listener_;
};

}  // namespace hookd::scheduler
