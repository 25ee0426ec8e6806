#include "storage/feed_store.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "core/json.hpp"
#include "storage/sql.hpp"

namespace hookd::storage {

namespace asio = boost::asio;
template <class T>
using awaitable = asio::awaitable<T>;
using changes::change;
using changes::change_kind;

std::string filter_key(const std::map<std::string, std::string>& filters) {
  return json::string_map(filters);  // std::map iterates in key order: the text is canonical
}

namespace {

const std::string feed_columns =
    "f.id, f.connection_id, f.object_type, f.filters::text, f.baseline_done, f.polls, "
    "f.record_count, " + millis_of("f.high_water") + ", f.pending_deletes::text, "
    "exists (select 1 from webhooks w where w.feed_id = f.id and w.event = 'deleted' "
    "and not w.is_paused), f.last_error";

changes::feed_state feed_from_row(const pqxx::row& r) {
  changes::feed_state s;
  s.id = r[0].as<std::int64_t>();
  s.connection_id = r[1].as<std::string>();
  s.object_type = r[2].as<std::string>();
  s.filters = json::parse_string_map(r[3].as<std::string>());
  s.baseline_done = r[4].as<bool>();
  s.polls = r[5].as<std::int64_t>();
  s.record_count = r[6].as<std::int64_t>();
  if (!r[7].is_null()) s.high_water = from_unix_millis(r[7].as<std::int64_t>());
  s.pending_deletes = json::parse_string_array(r[8].as<std::string>());
  s.has_deleted_webhook = r[9].as<bool>();
  s.last_error = r[10].as<std::string>();
  return s;
}

// Appends log entries and updates the snapshot for one batch of changes.
// Marks the feeds' webhooks as having delivery work: the delivery engine claims them by
// deliver_at. Last in a transaction, so that their rows stay locked only briefly (the engine's
// writes lock them too), and in id order, as the engine locks them (no deadlock).
void mark_for_delivery(pqxx::transaction_base& tx, const std::vector<std::int64_t>& feeds, sys_time now) {
  if (feeds.empty()) return;
  std::string list;
  for (auto f : feeds) list += (list.empty() ? "" : ",") + std::to_string(f);
  tx.exec0(fmt::format(
      "update webhooks set deliver_at = coalesce(deliver_at, {0}), deliver_gen = deliver_gen + 1 "
      "where id in (select id from webhooks where feed_id in ({1}) and hook_url <> '' "
      "order by id for update)",
      timestamp_sql(tx, now), list));
}

void write_changes(pqxx::transaction_base& tx, std::int64_t feed_id, const std::vector<change>& changes,
                   bool baseline, sys_time now) {
  const auto created_at = timestamp_sql(tx, now);
  const auto created_text = format_iso8601(now);
  const auto feed = std::to_string(feed_id);
  std::vector<std::string> up_ids, up_hashes, up_records;
  std::vector<std::string> del_ids, del_seqs;
  std::int64_t seq = 0;
  // The feed row is locked first (the change log and snapshot have no foreign key: a feed
  // deleted meanwhile makes this fail instead of leaving rows behind).
  if (!baseline) {
    auto head = tx.exec1(fmt::format("update feeds set head_seq = head_seq + {} where id = {} "
                                     "returning head_seq", changes.size(), feed))[0]
                    .as<std::int64_t>();
    seq = head - static_cast<std::int64_t>(changes.size());
  } else {
    tx.exec1(fmt::format("select id from feeds where id = {} for no key update", feed));
  }
  const auto first_seq = seq;
  for (const auto& c : changes) {
    ++seq;
    if (c.kind == change_kind::deleted) {
      del_ids.push_back(c.id);
      del_seqs.push_back(std::to_string(seq));
    } else {
      up_ids.push_back(c.id);
      up_hashes.push_back(c.hash);
      up_records.push_back(c.json);
    }
  }
  if (!del_ids.empty()) {
    auto ids = tx.quote(text_array_literal(del_ids));
    if (!baseline)
      // A delete carries the record's last known state, from the snapshot.
      tx.exec0(fmt::format(
          "insert into change_log(feed_id, seq, record_id, kind, record, created_at) "
          "select {0}, d.seq, d.id, 'deleted', r.record, {3} "
          "from unnest({1}::text[], {2}::bigint[]) as d(id, seq) "
          "join feed_records r on r.feed_id = {0} and r.record_id = d.id",
          feed, ids, tx.quote(text_array_literal(del_seqs)), created_at));
    tx.exec0(fmt::format("delete from feed_records where feed_id = {} and record_id = any({}::text[])",
                         feed, ids));
  }
  if (!up_ids.empty()) {
    tx.exec0(fmt::format(
        "insert into feed_records(feed_id, record_id, hash, record) "
        "select {}, u.id, u.hash, u.record from unnest({}::text[], {}::text[], {}::text[]) "
        "as u(id, hash, record) on conflict (feed_id, record_id) do update "
        "set hash = excluded.hash, record = excluded.record",
        feed, tx.quote(text_array_literal(up_ids)), tx.quote(text_array_literal(up_hashes)),
        tx.quote(text_array_literal(up_records))));
    if (!baseline) {
      // The log rows go in with COPY: no SQL text to build and parse for every record.
      pqxx::stream_to copy(tx, "change_log",
                           std::vector<std::string>{"feed_id", "seq", "record_id", "kind", "record", "created_at"});
      auto s = first_seq;
      for (const auto& c : changes) {
        ++s;
        if (c.kind != change_kind::deleted)
          copy << std::make_tuple(feed_id, s, c.id, std::string(changes::to_string(c.kind)), c.json, created_text);
      }
      copy.complete();
    }
  }
}

}  // namespace

awaitable<std::unordered_map<std::string, std::string>> feed_store::known_hashes(
    std::int64_t feed_id, std::vector<std::string> ids) {
  auto job = [feed_id, ids = std::move(ids)](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    std::unordered_map<std::string, std::string> out;
    auto r = tx.exec(fmt::format(
        "select record_id, hash from feed_records where feed_id = {} and record_id = any({}::text[])",
        feed_id, tx.quote(text_array_literal(ids))));
    for (const auto& row : r) out.emplace(row[0].as<std::string>(), row[1].as<std::string>());
    return out;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<void> feed_store::apply_changes(std::int64_t feed_id, std::vector<change> changes,
                                          bool baseline) {
  if (changes.empty()) co_return;
  auto now = clock_.now();
  auto job = [feed_id, changes = std::move(changes), baseline, now](pqxx::connection& c) {
    pqxx::work tx(c);
    write_changes(tx, feed_id, changes, baseline, now);
    if (!baseline) mark_for_delivery(tx, {feed_id}, now);
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

std::vector<std::unordered_map<std::string, std::string>> feed_store::known_hashes_batch(
    pqxx::connection& c, const std::vector<known_request>& requests) const {
  pqxx::read_transaction tx(c);
  std::vector<std::string> feeds, ids, slots;
  for (std::size_t i = 0; i < requests.size(); ++i)
    for (const auto& id : requests[i].ids) {
      feeds.push_back(std::to_string(requests[i].feed_id));
      ids.push_back(id);
      slots.push_back(std::to_string(i));
    }
  std::vector<std::unordered_map<std::string, std::string>> out(requests.size());
  if (ids.empty()) return out;
  // One query for every page of the batch, through the (feed_id, record_id) key.
  auto r = tx.exec(fmt::format(
      "select u.n, r.record_id, r.hash from unnest({}::bigint[], {}::text[], {}::int[]) as u(feed, id, n) "
      "join feed_records r on r.feed_id = u.feed and r.record_id = u.id",
      tx.quote(text_array_literal(feeds)), tx.quote(text_array_literal(ids)),
      tx.quote(text_array_literal(slots))));
  for (const auto& row : r)
    out[row[0].as<std::size_t>()].emplace(row[1].as<std::string>(), row[2].as<std::string>());
  return out;
}

std::vector<std::string> feed_store::apply_changes_batch(pqxx::connection& c,
                                                         const std::vector<apply_request>& requests) const {
  auto now = clock_.now();
  pqxx::work tx(c);
  std::vector<std::string> out(requests.size());
  std::vector<std::int64_t> logged;
  // Feed rows are locked in id order (one page per feed and batch: a poll's pages follow
  // one another); each page in a savepoint, so one that fails leaves the others written.
  std::vector<std::size_t> order(requests.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return requests[a].feed_id < requests[b].feed_id; });
  for (auto i : order) {
    const auto& r = requests[i];
    if (r.changes.empty()) continue;
    try {
      pqxx::subtransaction page(tx, "page");
      write_changes(page, r.feed_id, r.changes, r.baseline, now);
      page.commit();
      if (!r.baseline) logged.push_back(r.feed_id);
    } catch (const pqxx::broken_connection&) {
      throw;
    } catch (const std::exception& e) {
      out[i] = e.what();
    }
  }
  mark_for_delivery(tx, logged, now);
  tx.commit();
  return out;
}

awaitable<std::vector<std::string>> feed_store::snapshot_ids(std::int64_t feed_id) {
  auto job = [feed_id](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    std::vector<std::string> out;
    auto r = tx.exec(fmt::format("select record_id from feed_records where feed_id = {}", feed_id));
    out.reserve(r.size());
    for (const auto& row : r) out.push_back(row[0].as<std::string>());
    return out;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<void> feed_store::finish_poll(std::int64_t feed_id, changes::poll_outcome o) {
  auto now = clock_.now();
  auto job = [feed_id, o = std::move(o), now](pqxx::connection& c) {
    pqxx::work tx(c);
    auto ts = timestamp_sql(tx, now);
    std::string sql = fmt::format(
        "update feeds set polls = polls + 1, last_polled_at = {0}, poll_owner = null, "
        "poll_expires_at = null, pending_deletes = {1}::jsonb, baseline_done = baseline_done or {2}",
        ts, tx.quote(json::string_array(o.pending_deletes)), o.baseline_done ? "true" : "false");
    sql += ", last_error = " + tx.quote(o.complete ? std::string() : o.error);
    if (o.complete) sql += ", last_complete_at = " + ts;
    if (o.complete && o.full)
      sql += fmt::format(", last_full_scan_at = {}, record_count = (select count(*) from "
                         "feed_records where feed_id = {})", ts, feed_id);
    // Only a complete poll moves the high water mark: after an incomplete one, the records it
    // did not reach may be older than what it saw.
    if (o.high_water && o.complete)
      sql += fmt::format(", high_water = greatest(high_water, {})", timestamp_sql(tx, *o.high_water));
    sql += fmt::format(" where id = {} returning connection_id", feed_id);
    auto r = tx.exec1(sql);
    // A completed baseline lets include_all webhooks start their initial sync.
    if (o.baseline_done)
      tx.exec0(fmt::format(
          "update webhooks set deliver_at = coalesce(deliver_at, {0}), deliver_gen = deliver_gen + 1 "
          "where id in (select id from webhooks where feed_id = {1} and not initial_sync_done "
          "and hook_url <> '' order by id for update)", ts, feed_id));
    // A connection whose reads fail makes its webhooks unhealthy until a read succeeds.
    // is_healthy needs both: the source readable and the receiver accepting deliveries.
    tx.exec0(fmt::format("update webhooks set source_healthy = {0}, is_healthy = {0} and delivery_healthy "
                         "where connection_id = {1} and source_healthy <> {0}",
                         o.complete ? "true" : "false", tx.quote(r[0].as<std::string>())));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<std::vector<claimed_webhook>> feed_store::claim_due(std::string owner, int limit,
                                                              std::chrono::seconds lease) {
  auto now = clock_.now();
  auto job = [owner, limit, lease, now](pqxx::connection& c) {
    pqxx::work tx(c);
    auto ts = timestamp_sql(tx, now);
    auto r = tx.exec(fmt::format(
        "with due as ("
        " select w.id, w.triggered from webhooks w join connections c on c.id = w.connection_id"
        " where w.next_run_at <= {0} and not w.is_paused and not c.is_paused"
        " and (w.lease_expires_at is null or w.lease_expires_at < {0})"
        " order by w.next_run_at limit {1} for update of w skip locked)"
        " update webhooks w set lease_owner = {2}, lease_expires_at = {0} + interval '{3} seconds',"
        " triggered = false from due where w.id = due.id"
        " returning w.id, w.workspace_id, w.connection_id, w.object_type, w.event,"
        " coalesce(w.feed_id, 0), {4}, w.interval_minutes, {5}, due.triggered",
        ts, limit, tx.quote(owner), lease.count(), millis_of("w.next_run_at"),
        millis_of("coalesce(w.next_slot_at, w.next_run_at)")));
    tx.commit();
    std::vector<claimed_webhook> out;
    for (const auto& row : r)
      out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                     row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<std::int64_t>(),
                     from_unix_millis(row[6].as<std::int64_t>()),
                     from_unix_millis(row[8].as<std::int64_t>()), row[7].as<double>(),
                     row[9].as<bool>()});
    return out;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::optional<sys_time>> feed_store::next_due() {
  auto now = clock_.now();
  auto job = [now](pqxx::connection& c) -> std::optional<sys_time> {
    pqxx::read_transaction tx(c);
    // Only what claim_due could take: a webhook leased elsewhere is due when its lease lapses,
    // one of a paused connection not at all.
    auto r = tx.exec1(fmt::format(
        "select {} from webhooks w join connections c on c.id = w.connection_id "
        "where not w.is_paused and not c.is_paused",
        millis_of(fmt::format("min(case when w.lease_expires_at >= {0} then "
                              "greatest(w.next_run_at, w.lease_expires_at) else w.next_run_at end)",
                              timestamp_sql(tx, now)))));
    if (r[0].is_null()) return std::nullopt;
    return from_unix_millis(r[0].as<std::int64_t>());
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::int64_t> feed_store::ensure_feed(std::string webhook_id) {
  auto job = [webhook_id](pqxx::connection& c) {
    pqxx::work tx(c);
    auto w = tx.exec1("select connection_id, object_type, coalesce(feed_id, 0) from webhooks "
                      "where id = " + tx.quote(webhook_id));
    auto feed = w[2].as<std::int64_t>();
    if (feed == 0) {
      feed = assign_feed(tx, webhook_id, w[0].as<std::string>(), w[1].as<std::string>(), {});
    }
    tx.commit();
    return feed;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::pair<feed_lease, changes::feed_state>> feed_store::lease_feed(
    std::int64_t feed_id, std::string owner, sys_time fresh_since, std::chrono::seconds lease) {
  auto now = clock_.now();
  auto job = [=](pqxx::connection& c) -> std::pair<feed_lease, changes::feed_state> {
    pqxx::work tx(c);
    auto ts = timestamp_sql(tx, now);
    // Fresh: a finished poll that started at or after fresh_since (a poll that started before
    // a trigger may have missed what changed just before it).
    auto fresh = fmt::format(
        "f.last_poll_started_at is not null and f.last_poll_started_at >= {} and "
        "f.last_polled_at is not null and f.last_polled_at >= f.last_poll_started_at",
        timestamp_sql(tx, fresh_since));
    auto r = tx.exec(fmt::format(
        "update feeds f set poll_owner = {0}, poll_expires_at = {1} + interval '{2} seconds', "
        "last_poll_started_at = {1} "
        "where f.id = {3} and (f.poll_expires_at is null or f.poll_expires_at < {1} or f.poll_owner = {0}) "
        "and not ({6}) returning {5}",
        tx.quote(owner), ts, lease.count(), feed_id, timestamp_sql(tx, fresh_since), feed_columns,
        fresh));
    if (!r.empty()) {
      auto state = feed_from_row(r[0]);
      tx.commit();
      return {feed_lease::acquired, state};
    }
    auto s = tx.exec1(fmt::format("select coalesce(({}), false), f.last_error from feeds f where f.id = {}",
                                  fresh, feed_id));
    tx.commit();
    changes::feed_state shared;
    shared.last_error = s[1].as<std::string>();  // a shared poll that failed fails this run too
    return {s[0].as<bool>() ? feed_lease::fresh : feed_lease::busy, shared};
  };
  co_return co_await db_.run(std::move(job));
}

namespace {
std::string run_summary(const run_record& r) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.finished_at - r.started_at).count();
  std::string text = fmt::format("{} {}: ", format_iso8601(r.started_at), r.status);
  if (r.polled)
    text += fmt::format("{} scan, {} records read, {} requests, ", r.full_scan ? "full" : "incremental",
                        r.records_read, r.requests);
  else
    text += "shared a fresh poll, ";
  text += fmt::format("{} changes", r.changes);
  text += fmt::format(", {} ms", ms);
  if (!r.error.empty()) text += "; error: " + r.error;
  return text;
}
}  // namespace

awaitable<void> feed_store::finish_run(claimed_webhook w, std::string owner, run_record run,
                                       sys_time next_slot_at, sys_time next_run_at) {
  auto job = [=](pqxx::connection& c) {
    pqxx::work tx(c);
    json::writer summary;
    summary.value(run_summary(run));
    tx.exec0(fmt::format(
        "insert into webhook_runs(webhook_id, feed_id, owner, scheduled_for, started_at, finished_at,"
        " status, polled, full_scan, records_read, changes, requests, error) values"
        " ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        tx.quote(w.id), w.feed_id, tx.quote(owner), timestamp_sql(tx, w.scheduled_for),
        timestamp_sql(tx, run.started_at), timestamp_sql(tx, run.finished_at), tx.quote(run.status),
        run.polled, run.full_scan, run.records_read, run.changes, run.requests, tx.quote(run.error)));
    tx.exec0(fmt::format(
        "update webhooks set checked_at = {0}, "
        // A trigger that came during the run stays due.
        "next_run_at = case when triggered then least(next_run_at, {1}) else {1} end, "
        "next_slot_at = case when triggered then least(next_slot_at, {5}) else {5} end, lease_owner = null, "
        "lease_expires_at = null, runs = (select coalesce(jsonb_agg(e order by o), '[]'::jsonb) "
        "from jsonb_array_elements(jsonb_build_array({2}::jsonb) || runs) with ordinality t(e, o) "
        "where o <= 10) where id = {3} and lease_owner = {4}",
        timestamp_sql(tx, run.finished_at), timestamp_sql(tx, next_run_at),
        tx.quote(summary.str()), tx.quote(w.id), tx.quote(owner), timestamp_sql(tx, next_slot_at)));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<void> feed_store::extend_leases(std::string owner, std::chrono::seconds lease) {
  auto now = clock_.now();
  auto job = [=](pqxx::connection& c) {
    pqxx::work tx(c);
    auto until = fmt::format("{} + interval '{} seconds'", timestamp_sql(tx, now), lease.count());
    tx.exec0(fmt::format("update webhooks set lease_expires_at = {} where lease_owner = {}", until,
                         tx.quote(owner)));
    // Feed poll leases are held by runs: "<owner>/<webhook id>".
    tx.exec0(fmt::format("update feeds set poll_expires_at = {} where poll_owner like {}", until,
                         tx.quote(owner + "/%")));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<void> feed_store::release_leases(std::string owner) {
  auto job = [owner](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec0("update webhooks set lease_owner = null, lease_expires_at = null where lease_owner = " +
             tx.quote(owner));
    tx.exec0("update feeds set poll_owner = null, poll_expires_at = null where poll_owner like " +
             tx.quote(owner + "/%"));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<std::int64_t> feed_store::prune_log(std::chrono::seconds keep) {
  auto now = clock_.now();
  auto job = [=](pqxx::connection& c) {
    pqxx::work tx(c);
    auto r = tx.exec(fmt::format(
        "delete from change_log l using feeds f where l.feed_id = f.id "
        "and l.created_at < {} - interval '{} seconds' "
        "and l.seq <= coalesce((select min(w.cursor_seq) from webhooks w where w.feed_id = f.id), f.head_seq)",
        timestamp_sql(tx, now), keep.count()));
    tx.commit();
    return static_cast<std::int64_t>(r.affected_rows());
  };
  co_return co_await db_.run(std::move(job));
}

std::int64_t assign_feed(pqxx::work& tx, const std::string& webhook_id,
                         const std::string& connection_id, const std::string& object_type,
                         const std::map<std::string, std::string>& pushed_filters) {
  auto key = filter_key(pushed_filters);
  tx.exec0(fmt::format("insert into feeds(connection_id, object_type, filter_key, filters) "
                       "values ({0}, {1}, {2}, {2}::jsonb) on conflict do nothing",
                       tx.quote(connection_id), tx.quote(object_type), tx.quote(key)));
  auto f = tx.exec1(fmt::format("select id, head_seq from feeds where connection_id = {} and "
                                "object_type = {} and filter_key = {}",
                                tx.quote(connection_id), tx.quote(object_type), tx.quote(key)));
  // A webhook starts at the head of its feed's log: it sees the changes made after it.
  tx.exec0(fmt::format("update webhooks set feed_id = {}, cursor_seq = {} where id = {}",
                       f[0].as<std::int64_t>(), f[1].as<std::int64_t>(), tx.quote(webhook_id)));
  return f[0].as<std::int64_t>();
}

}  // namespace hookd::storage
