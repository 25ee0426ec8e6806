#include "scheduler/delivery_engine.hpp"

#include <algorithm>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "core/crypto.hpp"
#include "core/json.hpp"
#include "core/logging.hpp"
#include "delivery/batch.hpp"
#include "delivery/signing.hpp"
#include "sources/poller.hpp"

namespace hookd::scheduler {

namespace asio = boost::asio;
template <class T>
using awaitable = asio::awaitable<T>;
using storage::lane_input;
using storage::lane_write;
using storage::pending_delivery;

namespace {

constexpr std::size_t max_read_batch = 256;    // lanes per batched read
constexpr std::size_t max_write_batch = 1024;  // lane writes per commit
constexpr auto workspace_ttl = std::chrono::seconds(5);  // a new notification_url applies soon

std::string new_delivery_id() { return "msg_" + crypto::random_token(18); }

void log_failure(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("delivery task failed: {}", ex.what());
  }
}

// Drops the log entries that an initial-sync page already carried: the page holding the
// record's id was read at a log head at or after the entry. Without this, a record changed
// while the initial sync ran would arrive twice across the hand-over to VIRTUAL.
std::vector<delivery::log_entry> skip_sent_in_initial_sync(
    const std::vector<delivery::log_entry>& entries, const std::vector<storage::initial_page>& pages) {
  if (pages.empty()) return entries;
  std::vector<delivery::log_entry> out;
  for (const auto& e : entries) {
    auto page = std::find_if(pages.begin(), pages.end(),
                             [&](const storage::initial_page& p) { return e.record_id <= p.after; });
    if (page != pages.end() && page->head >= e.seq) continue;
    out.push_back(e);
  }
  return out;
}

pending_delivery make_delivery(std::string type, const delivery::batch& b, std::int64_t seq_to,
                               const std::string& webhook_json, const std::string& secret) {
  pending_delivery d;
  d.id = new_delivery_id();
  d.type = std::move(type);
  d.seq_to = seq_to;
  d.records = static_cast<int>(b.count);
  d.body = delivery::build_body(b.data, webhook_json, d.type, crypto::random_token(12), secret);
  return d;
}

// include_all: every current record of the snapshot, page by page (INITIAL-PARTIAL, the last
// INITIAL-COMPLETE). The first page moves the cursor to the log head read with it, so changes
// made during the sync follow as VIRTUAL deliveries: none is missed.
delivery_plan plan_initial(const lane_input& in, const std::string& webhook_json,
                           const std::string& secret, int ahead) {
  delivery_plan plan;
  const auto& hook = *in.hook;
  const auto limit = static_cast<std::size_t>(hook.page_max_limit);
  const std::span<const delivery::log_entry> all(in.snapshot);
  const auto seq_to = in.target.initial_after.empty() ? in.snapshot_head : in.target.cursor_seq;
  std::string after = in.target.initial_after;
  std::size_t pos = 0;
  while (static_cast<int>(plan.deliveries.size()) < ahead) {
    auto rest = all.subspan(pos);
    bool last = rest.size() <= limit && !in.snapshot_more;
    if (!last && rest.size() <= limit) break;  // the read ended here: the next read goes on
    auto page = rest.first(std::min(limit, rest.size()));
    auto b = delivery::select_batch(page, "created", in.target.client_filters, hook.fields,
                                    hook.page_max_limit);
    if (page.empty()) b.data = "[]";
    auto d = make_delivery(last ? "INITIAL-COMPLETE" : "INITIAL-PARTIAL", b, seq_to, webhook_json, secret);
    if (!page.empty()) after = page.back().record_id;
    d.initial_after = after;
    d.snapshot_head = in.snapshot_head;
    plan.deliveries.push_back(std::move(d));
    pos += page.size();
    if (last) break;
  }
  return plan;
}

delivery_plan plan_virtual(const lane_input& in, const std::string& webhook_json,
                           const std::string& secret, int ahead) {
  delivery_plan plan;
  if (in.unread.empty()) return plan;
  const auto& hook = *in.hook;
  auto entries = skip_sent_in_initial_sync(in.unread, in.target.initial_pages);
  const std::span<const delivery::log_entry> all(entries);
  std::size_t pos = 0;
  std::optional<std::int64_t> skip;
  while (pos < all.size() && static_cast<int>(plan.deliveries.size()) < ahead) {
    auto b = delivery::select_batch(all.subspan(pos), hook.event, in.target.client_filters,
                                    hook.fields, hook.page_max_limit);
    // A window cut short by the read: the next read makes it whole (fewer, fuller POSTs).
    if (!b.full && in.unread_more && !plan.deliveries.empty()) break;
    pos += b.used;
    if (b.count == 0) {
      skip = b.seq_to;
      continue;
    }
    plan.deliveries.push_back(make_delivery("VIRTUAL", b, b.seq_to, webhook_json, secret));
    skip.reset();
  }
  // Entries with nothing to send may be passed by the cursor only when no unacknowledged
  // delivery comes before them; otherwise the next read meets them again.
  if (plan.deliveries.empty()) plan.skip_to = entries.empty() ? in.unread.back().seq : skip;
  return plan;
}

}  // namespace

delivery_plan plan_deliveries(const lane_input& in, const std::string& secret, int ahead) {
  if (!in.hook) return {};
  auto webhook_json = to_json(*in.hook);
  if (!in.target.initial_sync_done) {
    if (!in.target.feed_ready) return {};  // the initial sync waits for the feed's baseline
    return plan_initial(in, webhook_json, secret, ahead);
  }
  return plan_virtual(in, webhook_json, secret, ahead);
}

// ---------------------------------------------------------------------------------------------

struct delivery_engine::lane_state {
  explicit lane_state(asio::io_context& ioc, std::string webhook_id)
      : id(std::move(webhook_id)), strand(asio::make_strand(ioc)), timer(strand) {}
  std::string id;
  asio::strand<asio::io_context::executor_type> strand;
  asio::steady_timer timer;            // wakes the lane when its queued writes are committed
  int outstanding = 0;                 // queued writes not yet committed (on strand)
  std::exception_ptr write_error;      // a queued write failed (on strand)
  std::atomic<bool> changed{false};    // the webhook was changed through the API
  bool reclaimed = false;              // claimed again while finishing (under mutex_)
};

struct delivery_engine::send_result {
  storage::attempt_record attempt;
  std::optional<std::string> retry_after;
  bool ok() const { return attempt.error.empty(); }
};

delivery_engine::delivery_engine(asio::io_context& ioc, net::http_client& client,
                                 storage::store& store, storage::delivery_store& deliveries,
                                 const clock& clk, delivery_options options)
    : ioc_(ioc), strand_(asio::make_strand(ioc)), timer_(strand_), client_(client), store_(store),
      deliveries_(deliveries), clock_(clk), options_(std::move(options)),
      reads_(ioc, deliveries.db(),
             [this](pqxx::connection& c, const std::vector<std::string>& ids) {
               return deliveries_.read_lanes(c, ids, options_.prepare_ahead);
             },
             max_read_batch),
      writes_(ioc, deliveries.db(),
              [this](pqxx::connection& c, const std::vector<lane_write>& w) {
                return deliveries_.write_lanes(c, w);
              },
              max_write_batch) {}

delivery_engine::~delivery_engine() { stopping_ = true; }

void delivery_engine::start() {
  asio::co_spawn(strand_, claim_loop(), log_failure);
  asio::co_spawn(ioc_, lease_keeper(), log_failure);
}

void delivery_engine::wake() {
  asio::post(strand_, [this] {
    wake_pending_ = true;
    timer_.cancel();
  });
}

void delivery_engine::changed(const std::string& webhook_id) {
  std::lock_guard lock(mutex_);
  if (auto it = lanes_.find(webhook_id); it != lanes_.end()) it->second->changed = true;
}

int delivery_engine::lanes() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(lanes_.size());
}

void delivery_engine::request_stop() {
  stopping_ = true;
  wake();
}

awaitable<void> delivery_engine::stop(std::chrono::seconds deadline) {
  request_stop();
  asio::steady_timer t(co_await asio::this_coro::executor);
  auto until = std::chrono::steady_clock::now() + deadline;
  while (lanes() > 0 && std::chrono::steady_clock::now() < until) {
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(asio::use_awaitable);
  }
  try {
    co_await deliveries_.release_leases();
  } catch (const std::exception& e) {
    spdlog::warn("giving back delivery leases failed: {}", e.what());
  }
  spdlog::info("delivery engine stopped; {} lanes unfinished at the drain deadline", lanes());
}

void delivery_engine::start_lane(const std::string& id) {
  std::shared_ptr<lane_state> st;
  {
    std::lock_guard lock(mutex_);
    auto it = lanes_.find(id);
    if (it != lanes_.end()) {
      // Its lane is giving the webhook back right now: it goes on instead of finishing.
      it->second->reclaimed = true;
      return;
    }
    st = std::make_shared<lane_state>(ioc_, id);
    lanes_.emplace(id, st);
  }
  asio::co_spawn(st->strand, lane(st), log_failure);
}

awaitable<void> delivery_engine::claim_loop() {
  while (!stopping_) {
    int room = options_.max_lanes - lanes();
    std::size_t asked = static_cast<std::size_t>(std::min(room, options_.claim_batch));
    std::vector<std::string> claimed;
    try {
      if (room > 0) claimed = co_await deliveries_.claim(static_cast<int>(asked), options_.lease);
    } catch (const std::exception& e) {
      spdlog::warn("claiming deliveries failed: {}", e.what());
    }
    for (const auto& id : claimed) start_lane(id);
    if (!claimed.empty() && claimed.size() == asked) continue;  // there may be more right now
    auto wait = std::chrono::duration_cast<std::chrono::steady_clock::duration>(options_.idle_wait);
    if (room > 0) {
      try {
        if (auto next = co_await deliveries_.next_due()) {
          auto until = *next - clock_.now();
          if (until < wait) wait = std::max<std::chrono::steady_clock::duration>(until, std::chrono::milliseconds(5));
        }
      } catch (const std::exception&) {
      }
    }
    if (stopping_) break;
    if (wake_pending_) {
      wake_pending_ = false;
      continue;
    }
    timer_.expires_after(wait);
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    wake_pending_ = false;
  }
}

awaitable<void> delivery_engine::lease_keeper() {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!stopping_) {
    t.expires_after(options_.lease / 3);
    co_await t.async_wait(asio::use_awaitable);
    std::vector<std::string> ids;
    {
      std::lock_guard lock(mutex_);
      for (const auto& [id, st] : lanes_) ids.push_back(id);
    }
    if (stopping_ || ids.empty()) continue;
    try {
      co_await deliveries_.extend_leases(std::move(ids), options_.lease);
    } catch (const std::exception& e) {
      spdlog::warn("extending delivery leases failed: {}", e.what());
    }
  }
}

awaitable<void> delivery_engine::lane(std::shared_ptr<lane_state> st) {
  for (;;) {
    bool failed = false;
    try {
      co_await serve(*st);
    } catch (const std::exception& e) {
      // The webhook's lease lapses (it is no longer extended once the lane is gone) and the
      // next claim serves it again: nothing is lost.
      spdlog::warn("delivering webhook {} failed: {}", st->id, e.what());
      failed = true;
    }
    if (failed) {
      try {
        co_await drain_writes(*st);  // no lane state outlives its queued writes
        // Given back to be claimed again shortly (if the database answers; else the lease lapses).
        lane_write back{st->id, {}, {}, {}, {},
                        lane_write::release_lease{false, 0, clock_.now() + std::chrono::seconds(1)}};
        co_await writes_.call(std::move(back));
      } catch (const std::exception&) {
      }
    }
    std::lock_guard lock(mutex_);
    if (st->reclaimed && !stopping_) {
      st->reclaimed = false;
      continue;
    }
    lanes_.erase(st->id);
    co_return;
  }
}

void delivery_engine::write_later(const std::shared_ptr<lane_state>& st, lane_write w) {
  ++st->outstanding;
  writes_.submit(std::move(w), [st](std::exception_ptr e, storage::lane_write_result) {
    asio::post(st->strand, [st, e] {
      --st->outstanding;
      if (e && !st->write_error) st->write_error = e;
      st->timer.cancel();
    });
  });
}

awaitable<void> delivery_engine::drain_writes(lane_state& st) {
  while (st.outstanding > 0) {
    st.timer.expires_at(asio::steady_timer::time_point::max());
    boost::system::error_code ec;
    co_await st.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (auto e = std::exchange(st.write_error, nullptr)) std::rethrow_exception(e);
}

awaitable<storage::workspace> delivery_engine::workspace(const std::string& id) {
  {
    std::lock_guard lock(mutex_);
    auto it = workspaces_.find(id);
    if (it != workspaces_.end() && std::chrono::steady_clock::now() - it->second.second < workspace_ttl)
      co_return it->second.first;
  }
  auto ws = co_await store_.workspace_by_id(id);
  std::lock_guard lock(mutex_);
  workspaces_[id] = {ws, std::chrono::steady_clock::now()};
  co_return ws;
}

awaitable<void> delivery_engine::serve(lane_state& st) {
  std::shared_ptr<lane_state> self;
  {
    std::lock_guard lock(mutex_);
    self = lanes_.at(st.id);
  }
  for (;;) {
    // What was sent is committed before the lane reads again: the read sees its own cursor.
    co_await drain_writes(st);
    st.changed = false;
    auto in = co_await reads_.call(st.id);
    if (!in.hook || !in.leased) co_return;  // deleted, or the lease went elsewhere
    lane_write release{st.id, {}, {}, {}, {}, lane_write::release_lease{false, in.gen, std::nullopt}};
    if (in.hook->is_paused || in.hook->hook_url.empty() || stopping_) {
      co_await writes_.call(std::move(release));
      co_return;
    }
    auto ws = co_await workspace(in.hook->workspace_id);
    auto queue = std::move(in.pending);
    if (queue.empty()) {
      auto plan = plan_deliveries(in, ws.secret, options_.prepare_ahead);
      if (plan.deliveries.empty()) {
        if (plan.skip_to) {
          lane_write skip{st.id, {}, plan.skip_to, {}, {}, {}};
          co_await writes_.call(std::move(skip));
          continue;
        }
        release.release->idle = true;  // caught up
        co_await writes_.call(std::move(release));
        co_return;
      }
      // Durable before the first attempt: the bodies and their webhook-ids are fixed now.
      lane_write record{st.id, plan.deliveries, {}, {}, {}, {}};
      auto recorded = co_await writes_.call(std::move(record));
      if (!recorded.held) co_return;
      queue = std::move(plan.deliveries);
    }
    for (const auto& d : queue) {
      if (stopping_ || st.changed) break;  // read again (or give the webhook back)
      if (d.next_attempt_at > clock_.now()) {
        release.release->deliver_at = d.next_attempt_at;  // the retry comes back through a claim
        co_await drain_writes(st);
        co_await writes_.call(std::move(release));
        co_return;
      }
      auto r = co_await send(*in.hook, ws, d);
      if (!r.ok()) {
        co_await drain_writes(st);
        co_await fail(st, *in.hook, ws, d, r);
        co_return;
      }
      // The next POST does not wait for this commit; the next read does.
      write_later(self, lane_write{st.id, {}, {}, {{d, r.attempt}}, {}, {}});
    }
  }
}

awaitable<delivery_engine::send_result> delivery_engine::send(const webhook& hook,
                                                              const storage::workspace& ws,
                                                              const pending_delivery& d) {
  // The Standard Webhooks signature is made per attempt: it covers the attempt's timestamp.
  auto timestamp = to_unix_millis(clock_.now()) / 1000;
  net::client_request req{"POST", hook.hook_url,
                          {{"content-type", "application/json"},
                           {"webhook-id", d.id},
                           {"webhook-timestamp", std::to_string(timestamp)},
                           {"webhook-signature", delivery::standard_signature(ws.secret, d.id, timestamp, d.body)}},
                          d.body, std::nullopt};
  auto result = co_await client_.send(std::move(req));
  send_result out;
  out.attempt = {d.attempts + 1, std::nullopt, 0, ""};
  auto& attempt = out.attempt;
  if (result) {
    attempt.status = result.response->status;
    attempt.latency_ms = static_cast<int>(result.response->latency.count() / 1000);
    out.retry_after = result.response->header_value("retry-after");
    if (*attempt.status / 100 != 2) attempt.error = fmt::format("HTTP {}", *attempt.status);
  } else {
    attempt.error = result.error->message;
  }
  log_event(attempt.error.empty() ? spdlog::level::info : spdlog::level::warn, "delivery",
            {{"webhook_id", hook.id}, {"delivery_id", d.id}, {"type", d.type},
             {"records", d.records}, {"attempt", attempt.attempt},
             {"status", attempt.status ? static_cast<int>(*attempt.status) : 0},
             {"latency_ms", attempt.latency_ms}, {"error", attempt.error}});
  co_return out;
}

awaitable<void> delivery_engine::fail(lane_state& st, const webhook& hook, const storage::workspace& ws,
                                      const pending_delivery& d, const send_result& r) {
  auto now = clock_.now();  // retry delays count from the answer, not from the request
  const auto& attempt = r.attempt;
  lane_write::failure f{d, attempt, std::nullopt, ""};
  if (attempt.status == 410u) {
    f.pause_reason = "hook_url answered 410 Gone";
  } else if (attempt.attempt > static_cast<int>(options_.retry_schedule.size())) {
    f.pause_reason = fmt::format("retry schedule exhausted after {} attempts; last error: {}",
                                 attempt.attempt, attempt.error);
  } else {
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::duration<double>(options_.retry_schedule[attempt.attempt - 1]));
    if ((attempt.status == 429u || attempt.status == 503u) && r.retry_after)
      if (auto s = sources::parse_retry_after(*r.retry_after, now))
        delay = std::min<std::chrono::milliseconds>(*s, options_.max_retry_after);
    f.next_attempt_at = now + delay;
  }
  auto pause = f.pause_reason;
  lane_write w{st.id, {}, {}, {}, f, lane_write::release_lease{false, 0, f.next_attempt_at}};
  auto result = co_await writes_.call(std::move(w));
  if (!result.held) co_return;
  // Deliveries are sequential, so the attempts of this delivery are the consecutive failures.
  if (attempt.attempt == options_.unhealthy_after)
    co_await notify(hook, ws, "WEBHOOK_UNHEALTHY",
                    fmt::format("{} consecutive failed deliveries; last: {}", attempt.attempt, attempt.error));
  if (!pause.empty()) {
    spdlog::warn("webhook {} paused: {}", hook.id, pause);
    co_await notify(hook, ws, "WEBHOOK_PAUSED", pause);
  }
}

awaitable<void> delivery_engine::notify(const webhook& hook, const storage::workspace& ws,
                                        std::string_view type, std::string_view reason) {
  if (ws.notification_url.empty()) co_return;
  json::writer data;
  data.begin_array().begin_object().field("webhook_id", hook.id).field("reason", reason).end_object().end_array();
  auto id = new_delivery_id();
  auto body = delivery::build_body(data.str(), to_json(hook), type, crypto::random_token(12), ws.secret);
  auto timestamp = to_unix_millis(clock_.now()) / 1000;
  net::client_request req{"POST", ws.notification_url,
                          {{"content-type", "application/json"},
                           {"webhook-id", id},
                           {"webhook-timestamp", std::to_string(timestamp)},
                           {"webhook-signature", delivery::standard_signature(ws.secret, id, timestamp, body)}},
                          body, std::nullopt};
  auto result = co_await client_.send(req);
  log_event(spdlog::level::info, "notification",
            {{"webhook_id", hook.id}, {"type", type},
             {"status", result ? static_cast<int>(result.response->status) : 0},
             {"error", result ? std::string() : result.error->message}});
}

}  // namespace hookd::scheduler
