#include "scheduler/scheduler.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "core/logging.hpp"

namespace hookd::scheduler {

namespace asio = boost::asio;
template <class T>
using awaitable = asio::awaitable<T>;

sys_time next_slot(sys_time scheduled, std::chrono::milliseconds interval, sys_time now) {
  if (interval.count() <= 0) return now;
  auto next = scheduled + interval;
  if (next > now) return next;
  auto behind = std::chrono::duration_cast<std::chrono::milliseconds>(now - scheduled);
  auto slots = behind / interval + 1;
  return scheduled + interval * slots;
}

namespace {

void log_failure(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("scheduler task failed: {}", ex.what());
  }
}

awaitable<void> sleep_for(std::chrono::steady_clock::duration d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::use_awaitable);
}

// One log line per run, for operators' dashboards.
void log_event_run(const storage::claimed_webhook& w, const storage::run_record& r) {
  log_event(r.status == "ok" ? spdlog::level::info : spdlog::level::warn, "run",
            {{"webhook_id", w.id},
             {"feed_id", w.feed_id},
             {"status", r.status},
             {"polled", r.polled},
             {"full_scan", r.full_scan},
             {"records_read", r.records_read},
             {"changes", r.changes},
             {"requests", r.requests},
             {"duration_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                 r.finished_at - r.started_at).count()},
             {"error", r.error}});
}

// Feed poll leases belong to one run (not to the instance), so that two runs of one
// instance on the same feed share a poll instead of both polling.
std::string poll_owner(const std::string& instance, const storage::claimed_webhook& w) {
  return fmt::format("{}/{}", instance, w.id);
}

std::chrono::milliseconds interval_of(const storage::claimed_webhook& w) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(w.interval_minutes * 60'000));
}

}  // namespace

scheduler::scheduler(asio::io_context& ioc, storage::store& store, storage::feed_store& feeds,
                     sources::poller& poller, const sources::integration_registry& integrations,
                     const clock& clk, scheduler_options options, std::function<void()> changes_logged)
    : ioc_(ioc), strand_(asio::make_strand(ioc)), timer_(strand_), store_(store), feeds_(feeds),
      pages_(ioc, feeds, feeds.db()),
      poller_(poller), changes_logged_(std::move(changes_logged)), integrations_(integrations),
      clock_(clk), options_(std::move(options)) {}

scheduler::~scheduler() {
  stopping_ = true;
  if (listener_.joinable()) listener_.join();
}

void scheduler::start() {
  asio::co_spawn(strand_, claim_loop(), log_failure);
  asio::co_spawn(ioc_, lease_keeper(), log_failure);
  listener_ = std::thread([this] { listen_loop(); });
}

void scheduler::wake() {
  asio::post(strand_, [this] { timer_.cancel(); });
}

awaitable<void> scheduler::stop(std::chrono::seconds deadline) {
  stopping_ = true;
  wake();
  auto until = std::chrono::steady_clock::now() + deadline;
  while (in_flight_ > 0 && std::chrono::steady_clock::now() < until)
    co_await sleep_for(std::chrono::milliseconds(20));
  co_await feeds_.release_leases(options_.owner);
  spdlog::info("scheduler stopped; {} runs unfinished at the drain deadline", in_flight_.load());
}

awaitable<void> scheduler::claim_loop() {
  while (!stopping_) {
    std::vector<storage::claimed_webhook> claimed;
    int room = options_.max_concurrent_runs - in_flight_;
    try {
      if (room > 0)
        claimed = co_await feeds_.claim_due(options_.owner, std::min(room, options_.batch),
                                            options_.lease);
    } catch (const std::exception& e) {
      spdlog::warn("claiming due webhooks failed: {}", e.what());
    }
    for (auto& w : claimed) {
      ++in_flight_;
      asio::co_spawn(ioc_, run(std::move(w)), [this](std::exception_ptr e) {
        --in_flight_;
        log_failure(e);
      });
    }
    if (!claimed.empty() && static_cast<int>(claimed.size()) == std::min(room, options_.batch))
      continue;  // there may be more due right now
    auto wait = std::chrono::duration_cast<std::chrono::steady_clock::duration>(options_.idle_wait);
    try {
      if (auto next = co_await feeds_.next_due()) {
        auto until = *next - clock_.now();
        if (until < wait) wait = std::max<std::chrono::steady_clock::duration>(until, std::chrono::milliseconds(5));
      }
    } catch (const std::exception&) {
    }
    if (stopping_) break;
    timer_.expires_after(wait);
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

awaitable<void> scheduler::lease_keeper() {
  // Long runs keep their leases; a dead instance's lapse after options_.lease.
  while (!stopping_) {
    co_await sleep_for(options_.lease / 3);
    if (stopping_ || in_flight_ == 0) continue;
    try {
      co_await feeds_.extend_leases(options_.owner, options_.lease);
    } catch (const std::exception& e) {
      spdlog::warn("extending leases failed: {}", e.what());
    }
  }
}

awaitable<std::optional<changes::poll_outcome>> scheduler::poll_if_due(
    const storage::claimed_webhook& w, std::int64_t feed_id, storage::run_record& run) {
  auto freshness = std::min<std::chrono::milliseconds>(options_.freshness, interval_of(w) / 2);
  // A trigger asks for a read of the source: only a poll made after it is fresh enough.
  auto fresh_since = w.triggered ? w.scheduled_for : w.next_slot_at - freshness;
  for (;;) {
    // No structured binding here: g++ 12 mishandles them across suspension points.
    auto leased = co_await feeds_.lease_feed(feed_id, poll_owner(options_.owner, w), fresh_since, options_.lease);
    if (leased.first == storage::feed_lease::fresh) {
      if (!leased.second.last_error.empty())
        run.error = "the shared poll of this feed was incomplete: " + leased.second.last_error;
      co_return std::nullopt;
    }
    if (leased.first == storage::feed_lease::busy) {
      // Another run (here or on another instance) is polling this feed: share its result.
      co_await sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    auto conn = co_await store_.get_connection_by_id(w.connection_id);
    const auto* def = conn ? integrations_.find(conn->integration_type) : nullptr;
    const auto* obj = def ? def->object(w.object_type) : nullptr;
    changes::poll_outcome outcome;
    if (!obj) {
      outcome.error = fmt::format("integration '{}' does not define object type '{}'",
                                  conn ? conn->integration_type : "?", w.object_type);
    } else {
      run.polled = true;
      // Whatever goes wrong (a database error on a strange record...), the poll ends here and
      // gives the feed's lease back, or the feed's other webhooks would wait for it.
      try {
        outcome = co_await poll_feed(poller_, pages_, *def, *obj, conn->auth_json, leased.second,
                                     options_.feed, changes_logged_);
      } catch (const std::exception& e) {
        outcome = changes::poll_outcome{};
        outcome.full = needs_full_scan(leased.second, *obj, options_.feed);
        outcome.error = std::string("the poll failed: ") + e.what();
      }
    }
    co_await feeds_.finish_poll(feed_id, outcome);
    // A completed baseline may start initial syncs (include_all) at once.
    if (outcome.baseline_done && changes_logged_) changes_logged_();
    co_return outcome;
  }
}

awaitable<void> scheduler::run(storage::claimed_webhook w) {
  storage::run_record run;
  run.started_at = clock_.now();
  // A webhook claimed before its poll slot (next_run_at set earlier, e.g. by an older
  // version's delivery retry) only has its schedule put right.
  bool slot_due = run.started_at >= w.next_slot_at;
  try {
    auto feed_id = w.feed_id ? w.feed_id : co_await feeds_.ensure_feed(w.id);
    w.feed_id = feed_id;
    run.status = "ok";
    if (slot_due) {
      auto outcome = co_await poll_if_due(w, feed_id, run);
      if (!outcome && !run.error.empty()) run.status = "incomplete";
      if (outcome) {
        run.full_scan = outcome->full;
        run.records_read = outcome->records_read;
        run.changes = outcome->changes;
        run.requests = outcome->requests;
        run.error = outcome->error;
        if (!outcome->complete) run.status = "incomplete";
      }
    }
  } catch (const std::exception& e) {
    run.status = "failed";
    run.error = e.what();
  }
  run.finished_at = clock_.now();
  auto slot = slot_due ? next_slot(w.next_slot_at, interval_of(w), run.finished_at) : w.next_slot_at;
  log_event_run(w, run);
  try {
    co_await feeds_.finish_run(w, options_.owner, run, slot, slot);
  } catch (const std::exception& e) {
    // The lease lapses and another run takes the slot: nothing is lost.
    spdlog::error("recording the run of webhook {} failed: {}", w.id, e.what());
  }
}

void scheduler::listen_loop() {
  const std::string url = store_.db().url();
  while (!stopping_) {
    try {
      pqxx::connection conn(url);
      struct receiver final : pqxx::notification_receiver {
        receiver(pqxx::connection& c, scheduler& s) : notification_receiver(c, "hookd_wakeup"), self(s) {}
        void operator()(const std::string& payload, int) override {
          // "changed:<id>": a webhook was updated or deleted (on any instance); else a trigger.
          if (payload.starts_with("changed:")) {
            if (self.webhook_changed_) self.webhook_changed_(payload.substr(8));
            return;
          }
          self.wake();
        }
        scheduler& self;
      } rx(conn, *this);
      while (!stopping_) conn.await_notification(0, 200'000);
    } catch (const std::exception& e) {
      if (stopping_) break;
      spdlog::warn("LISTEN hookd_wakeup failed ({}); retrying", e.what());
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
  }
}

}  // namespace hookd::scheduler
