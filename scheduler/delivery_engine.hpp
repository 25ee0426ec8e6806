#pragma once
// The delivery engine: delivers every webhook's unread changes to its hook_url, at least
// once and in order, in rounds that serve many webhooks at once.
//
// A webhook with work (a poll logged changes: deliver_at is set) is claimed under a delivery
// lease and served by a *lane*, a coroutine on its own strand that
//   1. reads its pending deliveries or its unread changes (one batched read for all lanes),
//   2. builds and signs its next POSTs in memory (up to `prepare_ahead` of them),
//   3. records them (one multi-row insert, one commit for all lanes) before the first is sent,
//   4. sends them one after the other over the keep-alive pool: POST k+1 only after POST k's 2xx,
//   5. queues each outcome for the next batched commit (the cursor moves past acknowledged
//      deliveries only) and, before reading again, waits until its outcomes are committed.
// A failed attempt is committed at once; the lane then gives the webhook back with deliver_at
// at the retry time. 410 and an exhausted retry schedule pause the webhook.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "net/http_client.hpp"
#include "scheduler/batcher.hpp"
#include "storage/delivery_store.hpp"
#include "storage/store.hpp"

namespace hookd::scheduler {

struct delivery_options {
  std::vector<double> retry_schedule;           // seconds before retry 1, 2, ...
  int unhealthy_after = 3;                      // consecutive failed attempts
  std::chrono::seconds max_retry_after{3600};   // cap on a receiver's Retry-After
  int max_lanes = 512;                          // webhooks served at once by this instance
  int prepare_ahead = 32;                       // POSTs a lane records per commit
  int claim_batch = 256;                        // webhooks claimed per query
  std::chrono::seconds lease{60};               // a dead instance's lanes are taken over after this
  std::chrono::milliseconds idle_wait{500};     // longest sleep between claims
};

// A lane's next POSTs, planned from what it read: the records of its event after the cursor
// (or the initial sync's snapshot pages), coalesced, projected, `ahead` pages at most, each
// body built and signed. `skip_to`: no delivery, but the cursor may pass these entries.
struct delivery_plan {
  std::vector<storage::pending_delivery> deliveries;
  std::optional<std::int64_t> skip_to;
};
delivery_plan plan_deliveries(const storage::lane_input& in, const std::string& secret, int ahead);

class delivery_engine {
public:
  delivery_engine(boost::asio::io_context& ioc, net::http_client& client, storage::store& store,
                  storage::delivery_store& deliveries, const clock& clk, delivery_options options);
  ~delivery_engine();

  void start();
  // Stops claiming; lanes stop before their next POST (they give their webhooks back).
  void request_stop();
  // request_stop(), then waits up to `deadline` for the lanes; gives the leases back.
  boost::asio::awaitable<void> stop(std::chrono::seconds deadline);
  // New changes were logged: claim now.
  void wake();
  // The webhook was changed or deleted through the API: its lane stops before its next POST
  // and reads the webhook again.
  void changed(const std::string& webhook_id);
  int lanes() const;

private:
  struct lane_state;
  struct send_result;
  boost::asio::awaitable<void> claim_loop();
  boost::asio::awaitable<void> lease_keeper();
  void start_lane(const std::string& id);
  boost::asio::awaitable<void> lane(std::shared_ptr<lane_state> st);
  boost::asio::awaitable<void> serve(lane_state& st);
  boost::asio::awaitable<void> drain_writes(lane_state& st);
  void write_later(const std::shared_ptr<lane_state>& st, storage::lane_write w);
  boost::asio::awaitable<send_result> send(const webhook& hook, const storage::workspace& ws,
                                           const storage::pending_delivery& d);
  boost::asio::awaitable<void> fail(lane_state& st, const webhook& hook, const storage::workspace& ws,
                                    const storage::pending_delivery& d, const send_result& r);
  boost::asio::awaitable<void> notify(const webhook& hook, const storage::workspace& ws,
                                      std::string_view type, std::string_view reason);
  boost::asio::awaitable<storage::workspace> workspace(const std::string& id);

  boost::asio::io_context& ioc_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer timer_;
  net::http_client& client_;
  storage::store& store_;
  storage::delivery_store& deliveries_;
  const clock& clock_;
  delivery_options options_;
  batcher<std::string, storage::lane_input> reads_;
  batcher<storage::lane_write, storage::lane_write_result> writes_;

  mutable std::mutex mutex_;  // guards lanes_ and workspaces_; never held across a co_await
  std::map<std::string, std::shared_ptr<lane_state>> lanes_;
  std::map<std::string, std::pair<storage::workspace, std::chrono::steady_clock::time_point>> workspaces_;
  std::atomic<bool> stopping_{false};
  bool wake_pending_ = false;  // on strand_
};

}  // namespace hookd::scheduler
