#include "scheduler/feed_poll.hpp"

#include <unordered_set>

#include "changes/canonical.hpp"
#include "core/json.hpp"

namespace hookd::scheduler {

namespace asio = boost::asio;
using changes::observed_record;

bool needs_full_scan(const changes::feed_state& feed, const sources::integration_object& obj,
                     const feed_poll_options& options) {
  if (!feed.baseline_done || !feed.high_water || !obj.incremental) return true;
  // Deletes that one scan found wait for the next full scan to confirm them.
  if (!feed.pending_deletes.empty()) return true;
  // Tombstones report deletes in incremental polls; otherwise only a full scan sees them.
  bool deletes_need_scan = feed.has_deleted_webhook && !obj.tombstones;
  int every = deletes_need_scan ? options.delete_scan_every : options.full_scan_every;
  return every <= 1 || (feed.polls + 1) % every == 0;
}

namespace {

observed_record observe(const sources::mapped_record& r, const std::vector<std::string>& volatile_fields) {
  observed_record o{r.id, r.hash, r.json, r.deleted};
  if (!o.hash.empty()) return o;  // hashed by the mapping
  json::document doc;
  if (!json::document::parse(r.json, doc)) o.hash = changes::record_hash(doc.root(), volatile_fields);
  return o;
}

}  // namespace

asio::awaitable<changes::poll_outcome> poll_feed(sources::poller& poller,
                                                 changes::feed_repository& repo,
                                                 const sources::integration& definition,
                                                 const sources::integration_object& object,
                                                 std::string auth_json, changes::feed_state feed,
                                                 feed_poll_options options,
                                                 std::function<void()> changes_logged) {
  changes::poll_outcome out;
  out.full = needs_full_scan(feed, object, options);
  out.pending_deletes = feed.pending_deletes;
  const bool baseline = !feed.baseline_done;
  std::unordered_set<std::string> seen;
  std::optional<sys_time> high_water;

  sources::scan_request req{&definition, &object, feed.connection_id, std::move(auth_json),
                            std::nullopt, feed.filters};
  if (!out.full) req.since = *feed.high_water - options.overlap;

  auto sink = [&](std::vector<sources::mapped_record> page) -> asio::awaitable<bool> {
    std::vector<observed_record> observed;
    std::vector<std::string> ids;
    observed.reserve(page.size());
    for (const auto& r : page) {
      observed.push_back(observe(r, object.volatile_fields));
      ids.push_back(r.id);
      if (out.full && !r.deleted) seen.insert(r.id);
      if (r.updated_at && (!high_water || *r.updated_at > *high_water)) high_water = r.updated_at;
    }
    auto known = co_await repo.known_hashes(feed.id, ids);
    auto found = changes::diff_observed(observed, known);
    auto logged = baseline ? 0 : static_cast<std::int64_t>(found.size());
    out.changes += logged;
    co_await repo.apply_changes(feed.id, std::move(found), baseline);
    if (logged && changes_logged) changes_logged();
    co_return true;
  };
  auto result = co_await poller.scan(std::move(req), sink);
  out.complete = result.complete;
  out.error = result.error;
  out.auth_failure = result.auth_failure;
  out.records_read = static_cast<std::int64_t>(result.records);
  out.requests = result.requests;
  if (high_water && options.started && *high_water > *options.started) high_water = options.started;
  out.high_water = high_water;
  out.skipped_records = static_cast<std::int64_t>(result.skipped);
  out.skip_reason = result.skip_reason;

  // Only a complete full scan may conclude that a record is gone.
  if (out.complete && out.full) {
    auto snapshot = co_await repo.snapshot_ids(feed.id);
    auto absent = changes::absent_ids(snapshot, seen);
    std::vector<changes::change> deletes;
    if (baseline) {
      // A baseline that finished over an earlier partial one: drop what is gone, silently.
      for (auto& id : absent) deletes.push_back({std::move(id), changes::change_kind::deleted, "", ""});
      out.pending_deletes.clear();
    } else {
      auto decision = changes::confirm_deletes(absent, feed.pending_deletes);
      for (auto& id : decision.apply)
        deletes.push_back({std::move(id), changes::change_kind::deleted, "", ""});
      out.pending_deletes = std::move(decision.hold);
      out.changes += static_cast<std::int64_t>(deletes.size());
    }
    bool logged = !baseline && !deletes.empty();
    co_await repo.apply_changes(feed.id, std::move(deletes), baseline);
    if (logged && changes_logged) changes_logged();
    out.baseline_done = true;
  }
  co_return out;
}

}  // namespace hookd::scheduler
