#include "scheduler/scheduler.hpp"

#include <unordered_map>

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
             {"skipped_records", r.skipped_records},
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

// The poll's page writes, fenced by its lease on the feed.
class fenced_pages final : public changes::feed_repository {
public:
  fenced_pages(batched_feeds& pages, std::string owner) : pages_(pages), owner_(std::move(owner)) {}
  awaitable<std::unordered_map<std::string, std::string>> known_hashes(std::int64_t feed_id,
                                                                     std::vector<std::string> ids) override {
    co_return co_await pages_.known_hashes(feed_id, std::move(ids));
  }
  awaitable<void> apply_changes(std::int64_t feed_id, std::vector<changes::change> changes,
                                bool baseline) override {
    co_await pages_.apply_fenced(feed_id, std::move(changes), baseline, owner_);
  }
  awaitable<std::vector<std::string>> snapshot_ids(std::int64_t feed_id) override {
    co_return co_await pages_.snapshot_ids(feed_id);
  }
  awaitable<void> finish_poll(std::int64_t, changes::poll_outcome) override {
    throw std::logic_error("a fenced poll is recorded with its runs");
  }

private:
  batched_feeds& pages_;
  std::string owner_;
};

// Groups a claim by feed: one poll serves every webhook of a feed that came due together.
std::vector<std::vector<storage::claimed_webhook>> group_by_feed(std::vector<storage::claimed_webhook> claimed) {
  std::vector<std::vector<storage::claimed_webhook>> groups;
  std::unordered_map<std::int64_t, std::size_t> at;
  for (auto& w : claimed) {
    if (w.feed_id == 0) {  // not assigned yet: alone
      groups.push_back({std::move(w)});
      continue;
    }
    auto [it, fresh] = at.try_emplace(w.feed_id, groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(std::move(w));
  }
  return groups;
}

}  // namespace

scheduler::scheduler(asio::io_context& ioc, storage::store& store, storage::feed_store& feeds,
                     run_batches& batches, sources::poller& poller,
                     const sources::integration_registry& integrations, const clock& clk,
                     scheduler_options options, std::function<void()> changes_logged)
    : ioc_(ioc), strand_(asio::make_strand(ioc)), timer_(strand_), store_(store), feeds_(feeds),
      pages_(ioc, feeds, feeds.db()), batches_(batches),
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
  asio::post(strand_, [this] {
    wake_pending_ = true;
    timer_.cancel();
  });
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

void scheduler::track(const std::vector<storage::claimed_webhook>& group, bool running) {
  std::lock_guard lock(in_flight_mutex_);
  for (const auto& w : group) {
    if (running)
      running_webhooks_.insert(w.id);
    else
      running_webhooks_.erase(w.id);
  }
}

void scheduler::track_poll(const std::string& owner, bool polling) {
  std::lock_guard lock(in_flight_mutex_);
  if (polling)
    running_polls_.insert(owner);
  else
    running_polls_.erase(owner);
}

awaitable<void> scheduler::claim_loop() {
  auto last_claim = std::chrono::steady_clock::now() - options_.claim_gap;
  while (!stopping_) {
    std::vector<storage::claimed_webhook> claimed;
    int room = options_.max_concurrent_runs - in_flight_;
    int limit = std::min(room, options_.batch);
    last_claim = std::chrono::steady_clock::now();
    wake_pending_ = false;  // this claim sees whatever a wake until now announced
    try {
      if (limit > 0) claimed = co_await feeds_.claim_due(options_.owner, limit, options_.lease);
    } catch (const std::exception& e) {
      spdlog::warn("claiming due webhooks failed: {}", e.what());
    }
    bool full = limit > 0 && static_cast<int>(claimed.size()) == limit;
    for (auto& group : group_by_feed(std::move(claimed))) {
      in_flight_ += static_cast<int>(group.size());
      track(group, true);
      auto n = static_cast<int>(group.size());
      asio::co_spawn(ioc_, run_group(std::move(group)), [this, n](std::exception_ptr e) {
        in_flight_ -= n;
        log_failure(e);
      });
    }
    if (full) continue;  // there may be more due right now
    // Sleep until the next due time, but not less than the claim gap (what comes due
    // meanwhile is claimed in one batch) nor more than idle_wait (leases elsewhere lapse).
    auto wait = std::chrono::duration_cast<std::chrono::steady_clock::duration>(options_.idle_wait);
    try {
      if (auto next = co_await feeds_.next_due()) {
        auto until = *next - clock_.now();
        if (until < wait) wait = std::max<std::chrono::steady_clock::duration>(until, std::chrono::milliseconds(1));
      }
    } catch (const std::exception&) {
    }
    auto gap_left = last_claim + options_.claim_gap - std::chrono::steady_clock::now();
    if (wait < gap_left) wait = gap_left;
    if (stopping_) break;
    // A wake during the claim or next_due() cancelled no timer: claim again after the gap.
    if (wake_pending_) wait = std::max<std::chrono::steady_clock::duration>(gap_left, {});
    timer_.expires_after(wait);
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

awaitable<void> scheduler::lease_keeper() {
  // Runs and polls in flight keep their leases; nothing else is renewed (a run whose
  // bookkeeping failed leaves its lease to lapse), and a dead instance's lapse after options_.lease.
  while (!stopping_) {
    co_await sleep_for(options_.lease / 3);
    if (stopping_) continue;
    std::vector<std::string> webhooks, polls;
    {
      std::lock_guard lock(in_flight_mutex_);
      webhooks.assign(running_webhooks_.begin(), running_webhooks_.end());
      polls.assign(running_polls_.begin(), running_polls_.end());
    }
    if (webhooks.empty() && polls.empty()) continue;
    try {
      co_await feeds_.extend_leases(options_.owner, std::move(webhooks), std::move(polls), options_.lease);
    } catch (const std::exception& e) {
      spdlog::warn("extending leases failed: {}", e.what());
    }
  }
}

awaitable<std::optional<storage::feed_store::finished_poll>> scheduler::poll_if_due(
    const storage::claimed_webhook& w, std::int64_t feed_id, sys_time fresh_since, storage::run_record& run) {
  const auto owner = poll_owner(options_.owner, w);
  for (;;) {
    storage::feed_store::lease_request request{feed_id, owner, fresh_since};
    auto leased = co_await batches_.lease_feed(std::move(request));
    if (leased.lease == storage::feed_lease::fresh) {
      if (!leased.state.last_error.empty())
        run.error = "the shared poll of this feed was incomplete: " + leased.state.last_error;
      co_return std::nullopt;
    }
    if (leased.lease == storage::feed_lease::busy) {
      // Another run (here or on another instance) is polling this feed: share its result.
      co_await sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    track_poll(owner, true);
    auto conn = co_await batches_.connection_by_id(w.connection_id);
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
        fenced_pages pages(pages_, owner);
        auto feed_options = options_.feed;
        feed_options.started = clock_.now();
        outcome = co_await poll_feed(poller_, pages, *def, *obj, conn->auth_json, leased.state,
                                     feed_options, changes_logged_);
      } catch (const std::exception& e) {
        outcome = changes::poll_outcome{};
        outcome.full = needs_full_scan(leased.state, *obj, options_.feed);
        outcome.error = std::string("the poll failed: ") + e.what();
      }
    }
    track_poll(owner, false);
    co_return storage::feed_store::finished_poll{feed_id, owner, std::move(outcome)};
  }
}

awaitable<void> scheduler::run_group(std::vector<storage::claimed_webhook> group) {
  storage::run_record run;
  run.started_at = clock_.now();
  run.status = "ok";
  // A webhook claimed before its poll slot (next_run_at set earlier, e.g. by an older
  // version's delivery retry) only has its schedule put right.
  std::vector<bool> slot_due;
  std::optional<sys_time> fresh_since;
  std::size_t poller = group.size();
  for (std::size_t i = 0; i < group.size(); ++i) {
    const auto& w = group[i];
    slot_due.push_back(run.started_at >= w.next_slot_at);
    if (!slot_due.back()) continue;
    if (poller == group.size()) poller = i;
    // A trigger asks for a read of the source: only a poll made after it is fresh enough. The
    // group's poll must be fresh enough for the most demanding of its webhooks.
    auto freshness = std::min<std::chrono::milliseconds>(options_.freshness, interval_of(w) / 2);
    auto since = w.triggered ? w.scheduled_for : w.next_slot_at - freshness;
    if (!fresh_since || since > *fresh_since) fresh_since = since;
  }
  std::optional<storage::feed_store::finished_poll> poll;
  try {
    auto feed_id = group[0].feed_id ? group[0].feed_id : co_await feeds_.ensure_feed(group[0].id);
    for (auto& w : group) w.feed_id = feed_id;
    if (poller < group.size()) {
      poll = co_await poll_if_due(group[poller], feed_id, *fresh_since, run);
      if (!poll && !run.error.empty()) run.status = "incomplete";
      if (poll) {
        const auto& o = poll->outcome;
        run.full_scan = o.full;
        run.records_read = o.records_read;
        run.changes = o.changes;
        run.requests = o.requests;
        run.error = o.error;
        run.skipped_records = o.skipped_records;
        run.skip_reason = o.skip_reason;
        if (!o.complete) run.status = "incomplete";
      }
    }
  } catch (const std::exception& e) {
    run.status = "failed";
    run.error = e.what();
  }
  run.finished_at = clock_.now();
  storage::feed_store::finish_request finished;
  finished.owner = options_.owner;
  finished.poll = poll;
  for (std::size_t i = 0; i < group.size(); ++i) {
    const auto& w = group[i];
    auto r = run;
    if (!slot_due[i]) {
      r = storage::run_record{};
      r.status = "ok";
      r.started_at = run.started_at;
      r.finished_at = run.finished_at;
    } else if (i != poller) {  // shared this group's poll
      r.polled = false;
      r.records_read = r.changes = r.skipped_records = 0;
      r.requests = 0;
      if (poll && !poll->outcome.complete)
        r.error = "the shared poll of this feed was incomplete: " + poll->outcome.error;
    }
    auto slot = slot_due[i] ? next_slot(w.next_slot_at, interval_of(w), run.finished_at) : w.next_slot_at;
    log_event_run(w, r);
    finished.runs.push_back({w, std::move(r), slot, slot});
  }
  bool baseline_done = poll && poll->outcome.baseline_done;
  try {
    auto error = co_await batches_.finish(std::move(finished));
    if (!error.empty()) spdlog::warn("recording a poll of feed {}: {}", group[0].feed_id, error);
    // A completed baseline may start initial syncs (include_all) at once.
    if (baseline_done && error.empty() && changes_logged_) changes_logged_();
  } catch (const std::exception& e) {
    // The leases lapse and another run takes the slot: nothing is lost.
    spdlog::error("recording the runs of feed {} failed: {}", group[0].feed_id, e.what());
  }
  track(group, false);
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
