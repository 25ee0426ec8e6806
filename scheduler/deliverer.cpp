#include "scheduler/deliverer.hpp"

#include <algorithm>

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

deliverer::deliverer(net::http_client& client, storage::store& store,
                     storage::delivery_store& deliveries, const clock& clk, delivery_options options)
    : client_(client), store_(store), deliveries_(deliveries), clock_(clk), options_(std::move(options)) {}

namespace {
constexpr int log_batch = 5000;  // change log entries read per delivery choice

std::string new_delivery_id() { return "msg_" + crypto::random_token(18); }

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
}  // namespace

awaitable<std::optional<storage::pending_delivery>> deliverer::next_delivery(
    const webhook& hook, const std::string& secret, bool& idle) {
  idle = false;
  auto target = co_await deliveries_.target(hook.id);
  if (!target.feed_id) {
    idle = true;
    co_return std::nullopt;
  }
  auto webhook_json = to_json(hook);
  if (!target.initial_sync_done) {
    if (!target.feed_ready) {
      idle = true;  // the initial sync waits for the feed's baseline
      co_return std::nullopt;
    }
    // include_all: every current record of the snapshot, page by page (INITIAL-PARTIAL, the
    // last INITIAL-COMPLETE). The first page moves the cursor to the log head read with it,
    // so changes made during the sync follow as VIRTUAL deliveries: none is missed.
    auto page = co_await deliveries_.snapshot_page(target.feed_id, target.initial_after, log_batch);
    const auto& entries = page.first;
    auto limit = static_cast<std::size_t>(hook.page_max_limit);
    auto b = delivery::select_batch(entries, "created", target.client_filters, hook.fields,
                                    hook.page_max_limit);
    if (entries.empty()) b.data = "[]";
    bool last = entries.size() <= limit;
    storage::pending_delivery d;
    d.id = new_delivery_id();
    d.type = last ? "INITIAL-COMPLETE" : "INITIAL-PARTIAL";
    d.seq_to = target.initial_after.empty() ? page.second : target.cursor_seq;
    d.snapshot_head = page.second;
    d.records = static_cast<int>(b.count);
    d.initial_after = entries.empty() ? target.initial_after
                                      : entries[std::min(entries.size(), limit) - 1].record_id;
    d.body = delivery::build_body(b.data, webhook_json, d.type, crypto::random_token(12), secret);
    co_return co_await deliveries_.record(hook.id, std::move(d));
  }
  for (;;) {
    auto unread = co_await deliveries_.unread(target.feed_id, target.cursor_seq, log_batch);
    if (unread.empty()) {
      idle = true;
      co_return std::nullopt;
    }
    auto entries = skip_sent_in_initial_sync(unread, target.initial_pages);
    if (entries.empty()) {
      co_await deliveries_.advance_cursor(hook.id, unread.back().seq);
      target.cursor_seq = unread.back().seq;
      continue;
    }
    auto b = delivery::select_batch(entries, hook.event, target.client_filters, hook.fields,
                                    hook.page_max_limit);
    if (b.count == 0) {
      co_await deliveries_.advance_cursor(hook.id, b.seq_to);
      target.cursor_seq = b.seq_to;
      continue;
    }
    storage::pending_delivery d;
    d.id = new_delivery_id();
    d.type = "VIRTUAL";
    d.seq_to = b.seq_to;
    d.records = static_cast<int>(b.count);
    d.body = delivery::build_body(b.data, webhook_json, d.type, crypto::random_token(12), secret);
    co_return co_await deliveries_.record(hook.id, std::move(d));
  }
}

awaitable<void> deliverer::notify(const webhook& hook, const storage::workspace& ws,
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

awaitable<bool> deliverer::send(const webhook& hook, const storage::workspace& ws,
                                storage::pending_delivery d, delivery_report& report) {
  const auto& secret = ws.secret;
  auto now = clock_.now();
  auto timestamp = to_unix_millis(now) / 1000;
  net::client_request req{"POST", hook.hook_url,
                          {{"content-type", "application/json"},
                           {"webhook-id", d.id},
                           {"webhook-timestamp", std::to_string(timestamp)},
                           {"webhook-signature", delivery::standard_signature(secret, d.id, timestamp, d.body)}},
                          d.body, std::nullopt};
  auto result = co_await client_.send(req);
  storage::attempt_record attempt{d.attempts + 1, std::nullopt, 0, ""};
  std::optional<std::string> retry_after;
  if (result) {
    attempt.status = result.response->status;
    attempt.latency_ms = static_cast<int>(result.response->latency.count() / 1000);
    retry_after = result.response->header_value("retry-after");
    if (*attempt.status / 100 != 2)
      attempt.error = fmt::format("HTTP {}", *attempt.status);
  } else {
    attempt.error = result.error->message;
  }
  log_event(attempt.error.empty() ? spdlog::level::info : spdlog::level::warn, "delivery",
            {{"webhook_id", hook.id}, {"delivery_id", d.id}, {"type", d.type},
             {"records", d.records}, {"attempt", attempt.attempt},
             {"status", attempt.status ? static_cast<int>(*attempt.status) : 0},
             {"latency_ms", attempt.latency_ms}, {"error", attempt.error}});
  if (attempt.error.empty()) {
    co_await deliveries_.delivered(hook.id, d, attempt);
    ++report.delivered;
    co_return true;
  }
  ++report.failed;
  now = clock_.now();  // retry delays count from the answer, not from the request
  std::string pause;
  std::optional<sys_time> next;
  if (attempt.status == 410u) {
    pause = "hook_url answered 410 Gone";
  } else if (attempt.attempt > static_cast<int>(options_.retry_schedule.size())) {
    pause = fmt::format("retry schedule exhausted after {} attempts; last error: {}",
                        attempt.attempt, attempt.error);
  } else {
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::duration<double>(options_.retry_schedule[attempt.attempt - 1]));
    if ((attempt.status == 429u || attempt.status == 503u) && retry_after)
      if (auto s = sources::parse_retry_after(*retry_after, now))
        delay = std::min<std::chrono::milliseconds>(*s, options_.max_retry_after);
    next = now + delay;
    report.retry_at = next;
  }
  co_await deliveries_.failed(hook.id, d, attempt, next, pause, options_.unhealthy_after);
  // Deliveries are sequential, so the attempts of this delivery are the consecutive failures.
  if (attempt.attempt == options_.unhealthy_after)
    co_await notify(hook, ws, "WEBHOOK_UNHEALTHY",
                    fmt::format("{} consecutive failed deliveries; last: {}", attempt.attempt, attempt.error));
  if (!pause.empty()) {
    report.paused = pause;
    spdlog::warn("webhook {} paused: {}", hook.id, pause);
    co_await notify(hook, ws, "WEBHOOK_PAUSED", pause);
  }
  co_return false;
}

awaitable<delivery_report> deliverer::deliver(std::string webhook_id) {
  delivery_report report;
  auto hook = co_await store_.get_webhook_by_id(webhook_id);
  // Database sync (db_url without hook_url) is not delivered over HTTP.
  if (!hook || hook->is_paused || hook->hook_url.empty()) co_return report;
  auto ws = co_await store_.workspace_by_id(hook->workspace_id);
  const auto& secret = ws.secret;
  for (int i = 0; i < options_.max_deliveries_per_run; ++i) {
    auto pending = co_await deliveries_.pending(webhook_id);
    if (pending && pending->next_attempt_at > clock_.now()) {
      report.retry_at = pending->next_attempt_at;
      break;
    }
    if (!pending) {
      bool idle = false;
      pending = co_await next_delivery(*hook, secret, idle);
      if (!pending) break;
    }
    if (!co_await send(*hook, ws, *pending, report)) break;
  }
  co_return report;
}

}  // namespace hookd::scheduler
