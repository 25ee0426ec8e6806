#include "storage/feed_store.hpp"

#include <algorithm>
#include <stdexcept>
#include <unordered_set>

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

// The feed_columns of a row, starting at column `at`.
changes::feed_state feed_from_row(const pqxx::row& row, int at = 0) {
  auto r = [&](int i) { return row[at + i]; };
  changes::feed_state s;
  s.id = r(0).as<std::int64_t>();
  s.connection_id = r(1).as<std::string>();
  s.object_type = r(2).as<std::string>();
  s.filters = json::parse_string_map(r(3).as<std::string>());
  s.baseline_done = r(4).as<bool>();
  s.polls = r(5).as<std::int64_t>();
  s.record_count = r(6).as<std::int64_t>();
  if (!r(7).is_null()) s.high_water = from_unix_millis(r(7).as<std::int64_t>());
  s.pending_deletes = json::parse_string_array(r(8).as<std::string>());
  s.has_deleted_webhook = r(9).as<bool>();
  s.last_error = r(10).as<std::string>();
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
                   bool baseline, sys_time now, const std::string& poll_owner = {}) {
  const auto created_at = timestamp_sql(tx, now);
  const auto created_text = format_iso8601(now);
  const auto feed = std::to_string(feed_id);
  std::vector<std::string> up_ids, up_hashes, up_records;
  std::vector<std::string> del_ids, del_seqs;
  std::int64_t seq = 0;
  // The feed row is locked first (the change log and snapshot have no foreign key: a feed
  // deleted meanwhile makes this fail instead of leaving rows behind), and only while the
  // poll still holds its lease (fencing: a poll that lapsed and was taken over writes nothing).
  auto fence = poll_owner.empty()
                   ? std::string()
                   : fmt::format(" and poll_owner = {} and poll_expires_at >= now()", tx.quote(poll_owner));
  auto locked = baseline
                    ? tx.exec(fmt::format("select head_seq from feeds where id = {}{} for no key update", feed, fence))
                    : tx.exec(fmt::format("update feeds set head_seq = head_seq + {} where id = {}{} "
                                          "returning head_seq", changes.size(), feed, fence));
  if (locked.empty())
    throw std::runtime_error(poll_owner.empty() ? "the feed no longer exists"
                                                : "the feed no longer exists or the poll's lease on it lapsed");
  if (!baseline) seq = locked[0][0].as<std::int64_t>() - static_cast<std::int64_t>(changes.size());
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
      write_changes(page, r.feed_id, r.changes, r.baseline, now, r.poll_owner);
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

namespace {

std::string bool_sql(bool b) { return b ? "true" : "false"; }

// The webhook rows a finish batch updates, locked in id order first: the delivery engine and
// the poll pages lock webhook rows in id order too, so no two transactions deadlock.
// Returns the ids of those that exist (a webhook deleted meanwhile gets no run row).
std::unordered_set<std::string> lock_webhooks(pqxx::work& tx, const std::vector<std::string>& ids,
                                              const std::vector<std::string>& feeds,
                                              const std::vector<std::string>& connections) {
  auto r = tx.exec(fmt::format(
      "select id from webhooks where id = any({}::text[]) or feed_id = any({}::bigint[]) "
      "or connection_id = any({}::text[]) order by id for update",
      tx.quote(text_array_literal(ids)), tx.quote(text_array_literal(feeds)),
      tx.quote(text_array_literal(connections))));
  std::unordered_set<std::string> out;
  for (const auto& row : r) out.insert(row[0].as<std::string>());
  return out;
}

std::string run_summary(const run_record& r) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(r.finished_at - r.started_at).count();
  std::string text = fmt::format("{} {}: ", format_iso8601(r.started_at), r.status);
  if (r.polled)
    text += fmt::format("{} scan, {} records read, {} requests, ", r.full_scan ? "full" : "incremental",
                        r.records_read, r.requests);
  else
    text += "shared a fresh poll, ";
  text += fmt::format("{} changes", r.changes);
  if (r.skipped_records)
    text += fmt::format(", {} unusable records skipped (first: {})", r.skipped_records, r.skip_reason);
  text += fmt::format(", {} ms", ms);
  if (!r.error.empty()) text += "; error: " + r.error;
  return text;
}

// Records the polls of a batch (fenced by their poll leases) and returns, per request, ""
// or why its poll was not recorded. Also starts initial syncs after completed baselines and
// updates the webhooks' source health. Locks every row the batch writes: feeds, then webhooks.
std::vector<std::string> write_polls(pqxx::work& tx, const std::vector<feed_store::finish_request>& requests,
                                     const std::string& now_sql, std::unordered_set<std::string>& locked) {
  std::vector<std::string> out(requests.size());
  std::vector<std::string> ids, owners, pending, baseline, errors, complete, full, high, slots;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!requests[i].poll) continue;
    const auto& p = *requests[i].poll;
    const auto& o = p.outcome;
    ids.push_back(std::to_string(p.feed_id));
    owners.push_back(p.owner);
    pending.push_back(json::string_array(o.pending_deletes));
    baseline.push_back(bool_sql(o.baseline_done));
    errors.push_back(o.complete ? std::string() : o.error);
    complete.push_back(bool_sql(o.complete));
    full.push_back(bool_sql(o.full));
    // Only a complete poll moves the high water mark: after an incomplete one, the records it
    // did not reach may be older than what it saw.
    high.push_back(std::to_string(o.high_water && o.complete ? to_unix_millis(*o.high_water) : 0));
    slots.push_back(std::to_string(i));
  }
  std::vector<std::string> run_ids;
  for (const auto& r : requests)
    for (const auto& run : r.runs) run_ids.push_back(run.webhook.id);
  if (ids.empty()) {
    locked = lock_webhooks(tx, run_ids, {}, {});
    return out;
  }
  auto arr = [&](const std::vector<std::string>& v) { return tx.quote(text_array_literal(v)); };
  // Feed rows first, in id order (as the poll pages lock them).
  tx.exec(fmt::format("select id from feeds where id = any({}::bigint[]) order by id for update", arr(ids)));
  auto written = tx.exec(fmt::format(
      "update feeds f set polls = polls + 1, last_polled_at = {0}, poll_owner = null, poll_expires_at = null, "
      "pending_deletes = v.pending::jsonb, baseline_done = f.baseline_done or v.baseline, last_error = v.error, "
      "last_complete_at = case when v.complete then {0} else f.last_complete_at end, "
      "last_full_scan_at = case when v.complete and v.is_full then {0} else f.last_full_scan_at end, "
      "record_count = case when v.complete and v.is_full then "
      "(select count(*) from feed_records r where r.feed_id = f.id) else f.record_count end, "
      "high_water = case when v.high > 0 then greatest(f.high_water, to_timestamp(v.high::double precision / 1000)) "
      "else f.high_water end "
      "from unnest({1}::bigint[], {2}::text[], {3}::text[], {4}::boolean[], {5}::text[], {6}::boolean[], "
      "{7}::boolean[], {8}::bigint[], {9}::int[]) as v(id, owner, pending, baseline, error, complete, is_full, high, n) "
      // Fencing: a poll whose lease lapsed (another run may be polling now) records nothing.
      "where f.id = v.id and (v.owner = '' or (f.poll_owner = v.owner and f.poll_expires_at >= now())) "
      "returning v.n, f.connection_id, v.complete, v.baseline, f.id",
      now_sql, arr(ids), arr(owners), arr(pending), arr(baseline), arr(errors), arr(complete), arr(full),
      arr(high), arr(slots)));
  std::vector<bool> recorded(requests.size());
  std::vector<std::string> health_conns, health_ok, baseline_feeds;
  for (const auto& row : written) {
    recorded[row[0].as<std::size_t>()] = true;
    health_conns.push_back(row[1].as<std::string>());
    health_ok.push_back(bool_sql(row[2].as<bool>()));
    if (row[3].as<bool>()) baseline_feeds.push_back(row[4].as<std::string>());
  }
  for (std::size_t i = 0; i < requests.size(); ++i)
    if (requests[i].poll && !recorded[i])
      out[i] = "the poll's lease on its feed lapsed before its results were recorded";
  locked = lock_webhooks(tx, run_ids, baseline_feeds, health_conns);
  // A completed baseline lets include_all webhooks start their initial sync.
  if (!baseline_feeds.empty())
    tx.exec0(fmt::format(
        "update webhooks set deliver_at = coalesce(deliver_at, {0}), deliver_gen = deliver_gen + 1 "
        "where feed_id = any({1}::bigint[]) and not initial_sync_done and hook_url <> ''",
        now_sql, arr(baseline_feeds)));
  // A connection whose reads fail makes its webhooks unhealthy until a read succeeds.
  // is_healthy needs both: the source readable and the receiver accepting deliveries.
  // (Among the rows just locked: by primary key, not a join over every webhook.)
  if (!health_conns.empty()) {
    std::vector<std::string> ids(locked.begin(), locked.end());
    tx.exec0(fmt::format(
        "update webhooks w set source_healthy = v.ok, is_healthy = v.ok and w.delivery_healthy "
        "from unnest({}::text[], {}::boolean[]) as v(conn, ok) "
        "where w.id = any({}::text[]) and w.connection_id = v.conn and w.source_healthy <> v.ok",
        arr(health_conns), arr(health_ok), arr(ids)));
  }
  return out;
}

// Records the runs of a batch: the run rows (COPY; the webhook's `runs` is read from them), and
// on each webhook checked_at, the next slot, and the lease released (only where the run's owner
// still holds it).
void write_runs(pqxx::work& tx, const std::vector<feed_store::finish_request>& requests,
                const std::unordered_set<std::string>& existing) {
  std::vector<std::string> ids, owners, finished, next_run, next_slot;
  {
    pqxx::stream_to copy(tx, "webhook_runs",
                         std::vector<std::string>{"webhook_id", "feed_id", "owner", "scheduled_for",
                                                  "started_at", "finished_at", "status", "polled",
                                                  "full_scan", "records_read", "changes", "requests", "error",
                                                  "summary"});
    for (const auto& r : requests)
      for (const auto& f : r.runs) {
        const auto& w = f.webhook;
        if (!existing.contains(w.id)) continue;
        const auto& run = f.run;
        copy << std::make_tuple(w.id, w.feed_id, r.owner, format_iso8601(w.scheduled_for),
                                format_iso8601(run.started_at), format_iso8601(run.finished_at), run.status,
                                bool_sql(run.polled), bool_sql(run.full_scan), run.records_read, run.changes,
                                run.requests, run.error, run_summary(run));
        ids.push_back(w.id);
        owners.push_back(r.owner);
        finished.push_back(std::to_string(to_unix_millis(run.finished_at)));
        next_run.push_back(std::to_string(to_unix_millis(f.next_run_at)));
        next_slot.push_back(std::to_string(to_unix_millis(f.next_slot_at)));
      }
    copy.complete();
  }
  if (ids.empty()) return;
  auto arr = [&](const std::vector<std::string>& v) { return tx.quote(text_array_literal(v)); };
  auto ts = [](const char* c) { return fmt::format("to_timestamp(v.{}::double precision / 1000)", c); };
  tx.exec0(fmt::format(
      "update webhooks w set checked_at = {0}, "
      // A trigger that came during the run stays due.
      "next_run_at = case when w.triggered then least(w.next_run_at, {1}) else {1} end, "
      "next_slot_at = case when w.triggered then least(w.next_slot_at, {2}) else {2} end, "
      "lease_owner = null, lease_expires_at = null "
      "from unnest({3}::text[], {4}::text[], {5}::bigint[], {6}::bigint[], {7}::bigint[]) "
      "as v(id, owner, finished, next_run, next_slot) "
      "where w.id = v.id and w.lease_owner = v.owner",
      ts("finished"), ts("next_run"), ts("next_slot"), arr(ids), arr(owners), arr(finished), arr(next_run),
      arr(next_slot)));
}

}  // namespace

std::vector<std::string> feed_store::finish_batch(pqxx::connection& c,
                                                  const std::vector<finish_request>& requests) const {
  auto now = clock_.now();
  auto write = [&](const std::vector<finish_request>& batch) {
    pqxx::work tx(c);
    std::unordered_set<std::string> locked;
    auto out = write_polls(tx, batch, timestamp_sql(tx, now), locked);
    write_runs(tx, batch, locked);
    tx.commit();
    return out;
  };
  // A deadlock with another transaction (PostgreSQL aborted this one to break it) is not the
  // batch's fault: the same batch once more first.
  for (int attempt = 0;; ++attempt) {
    try {
      return write(requests);
    } catch (const pqxx::broken_connection&) {
      throw;
    } catch (const pqxx::transaction_rollback& e) {
      if (attempt < 2) continue;
      if (requests.size() == 1) return {e.what()};
      break;
    } catch (const std::exception& e) {
      if (requests.size() == 1) return {e.what()};
      break;
    }
  }
  // Something in the batch could not be written: each request alone, so that it fails alone.
  std::vector<std::string> out(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    try {
      out[i] = write({requests[i]})[0];
    } catch (const pqxx::broken_connection&) {
      throw;
    } catch (const std::exception& e) {
      out[i] = e.what();
    }
  }
  return out;
}

awaitable<void> feed_store::finish_poll(std::int64_t feed_id, changes::poll_outcome o) {
  auto job = [this, feed_id, o = std::move(o)](pqxx::connection& c) {
    finish_request r;
    r.poll = finished_poll{feed_id, "", std::move(o)};
    auto error = finish_batch(c, {r})[0];
    if (!error.empty()) throw std::runtime_error("recording the poll failed: " + error);
  };
  co_await db_.run(std::move(job));
}

awaitable<void> feed_store::finish_run(claimed_webhook w, std::string owner, run_record run,
                                       sys_time next_slot_at, sys_time next_run_at) {
  auto job = [=, this](pqxx::connection& c) {
    finish_request r;
    r.owner = owner;
    r.runs.push_back({w, run, next_slot_at, next_run_at});
    auto error = finish_batch(c, {r})[0];
    if (!error.empty()) throw std::runtime_error("recording the run failed: " + error);
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
        " and (w.lease_expires_at is null or w.lease_expires_at < now())"
        " order by w.next_run_at limit {1} for update of w skip locked)"
        " update webhooks w set lease_owner = {2}, lease_expires_at = now() + interval '{3} seconds',"
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
  auto job = [](pqxx::connection& c) -> std::optional<sys_time> {
    pqxx::read_transaction tx(c);
    // Walks the due index from its start; only what claim_due could take counts.
    auto r = tx.exec(fmt::format(
        "select {} from webhooks w join connections c on c.id = w.connection_id "
        "where not w.is_paused and not c.is_paused "
        "and (w.lease_expires_at is null or w.lease_expires_at < now()) "
        "order by w.next_run_at limit 1",
        millis_of("w.next_run_at")));
    if (r.empty()) return std::nullopt;
    return from_unix_millis(r[0][0].as<std::int64_t>());
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

std::vector<feed_store::lease_result> feed_store::lease_feeds_batch(
    pqxx::connection& c, const std::vector<lease_request>& requests, std::chrono::seconds lease) const {
  auto now = clock_.now();
  pqxx::work tx(c);
  std::vector<std::string> feeds, owners, fresh;
  for (const auto& r : requests) {
    feeds.push_back(std::to_string(r.feed_id));
    owners.push_back(r.owner);
    fresh.push_back(std::to_string(to_unix_millis(r.fresh_since)));
  }
  auto arr = [&](const std::vector<std::string>& v) { return tx.quote(text_array_literal(v)); };
  auto req = fmt::format("unnest({}::bigint[], {}::text[], {}::bigint[]) with ordinality as r(feed, owner, fresh, n)",
                         arr(feeds), arr(owners), arr(fresh));
  // Fresh: a finished poll that started at or after fresh_since (a poll that started before
  // a trigger may have missed what changed just before it).
  const std::string is_fresh =
      "f.last_poll_started_at is not null and f.last_poll_started_at >= "
      "to_timestamp(r.fresh::double precision / 1000) and "
      "f.last_polled_at is not null and f.last_polled_at >= f.last_poll_started_at";
  tx.exec(fmt::format("select id from feeds where id = any({}::bigint[]) order by id for update", arr(feeds)));
  auto got = tx.exec(fmt::format(
      "update feeds f set poll_owner = r.owner, poll_expires_at = now() + interval '{0} seconds', "
      "last_poll_started_at = {1} from {2} "
      "where f.id = r.feed and (f.poll_expires_at is null or f.poll_expires_at < now() or f.poll_owner = r.owner) "
      "and not ({3}) returning r.n, {4}",
      lease.count(), timestamp_sql(tx, now), req, is_fresh, feed_columns));
  std::vector<lease_result> out(requests.size());
  std::vector<bool> acquired(requests.size());
  for (const auto& row : got) {
    auto i = row[0].as<std::size_t>() - 1;
    acquired[i] = true;
    out[i].lease = feed_lease::acquired;
    out[i].state = feed_from_row(row, 1);
  }
  if (got.size() < requests.size()) {
    auto rest = tx.exec(fmt::format("select r.n, coalesce(({}), false), f.last_error from {} "
                                    "left join feeds f on f.id = r.feed",
                                    is_fresh, req));
    for (const auto& row : rest) {
      auto i = row[0].as<std::size_t>() - 1;
      if (acquired[i]) continue;
      if (row[2].is_null()) {  // the feed is gone (its last webhook was deleted meanwhile)
        out[i].lease = feed_lease::fresh;
        out[i].state.last_error = "the feed no longer exists";
        continue;
      }
      out[i].lease = row[1].as<bool>() ? feed_lease::fresh : feed_lease::busy;
      out[i].state.last_error = row[2].as<std::string>();  // a shared poll that failed fails this run too
    }
  }
  tx.commit();
  return out;
}

awaitable<std::pair<feed_lease, changes::feed_state>> feed_store::lease_feed(
    std::int64_t feed_id, std::string owner, sys_time fresh_since, std::chrono::seconds lease) {
  auto job = [=, this](pqxx::connection& c) -> std::pair<feed_lease, changes::feed_state> {
    auto r = lease_feeds_batch(c, {{feed_id, owner, fresh_since}}, lease);
    return {r[0].lease, std::move(r[0].state)};
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<void> feed_store::extend_leases(std::string owner, std::vector<std::string> webhook_ids,
                                          std::vector<std::string> poll_owners, std::chrono::seconds lease) {
  auto job = [=](pqxx::connection& c) {
    pqxx::work tx(c);
    auto until = fmt::format("now() + interval '{} seconds'", lease.count());
    // Feeds first, then webhooks, each in id order: as the finish batches lock them.
    if (!poll_owners.empty())
      tx.exec0(fmt::format("update feeds set poll_expires_at = {} where id in (select id from feeds where "
                           "poll_owner = any({}::text[]) order by id for update)",
                           until, tx.quote(text_array_literal(poll_owners))));
    if (!webhook_ids.empty())
      tx.exec0(fmt::format("update webhooks set lease_expires_at = {} where id in (select id from webhooks where "
                           "lease_owner = {} and id = any({}::text[]) order by id for update)",
                           until, tx.quote(owner), tx.quote(text_array_literal(webhook_ids))));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<void> feed_store::release_leases(std::string owner) {
  auto job = [owner](pqxx::connection& c) {
    pqxx::work tx(c);
    // Feeds, then webhooks, each in id order (as every other writer locks them).
    tx.exec0("update feeds set poll_owner = null, poll_expires_at = null where id in (select id from feeds "
             "where poll_owner like " + tx.quote(owner + "/%") + " order by id for update)");
    tx.exec0("update webhooks set lease_owner = null, lease_expires_at = null where id in (select id from "
             "webhooks where lease_owner = " + tx.quote(owner) + " order by id for update)");
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

namespace {

constexpr int prune_batch_rows = 5000;
constexpr int prune_batch_webhooks = 500;

struct history_table {
  const char* name;
  const char* time_column;
};
constexpr history_table history_tables[] = {{"webhook_runs", "started_at"}, {"delivery_attempts", "at"}};

// Deletes, among the table's oldest rows (by id, which follows time), those older than the
// cutoff. Returns how many; fewer than a batch means the old end is reached.
std::int64_t prune_oldest(pqxx::connection& c, const history_table& t, sys_time cutoff) {
  pqxx::work tx(c);
  auto r = tx.exec(fmt::format(
      "delete from {0} where id in (select id from (select id, {1} from {0} order by id limit {2}) o "
      "where o.{1} < {3})",
      t.name, t.time_column, prune_batch_rows, timestamp_sql(tx, cutoff)));
  tx.commit();
  return static_cast<std::int64_t>(r.affected_rows());
}

// Trims the history of the webhooks after `after` (a chunk, in id order) to the newest
// `keep` rows each. Returns the chunk's last webhook id ("" when there are no more).
std::string prune_per_webhook(pqxx::connection& c, const history_table& t, const std::string& after, int keep,
                              std::int64_t& deleted) {
  pqxx::work tx(c);
  auto chunk = tx.exec(fmt::format("select id from webhooks where id > {} order by id limit {}", tx.quote(after),
                                   prune_batch_webhooks));
  if (chunk.empty()) return {};
  auto last = chunk[chunk.size() - 1][0].as<std::string>();
  auto r = tx.exec(fmt::format(
      "with w as (select id from webhooks where id > {0} and id <= {1}), "
      "cut as (select w.id, (select h.{3} from {2} h where h.webhook_id = w.id order by h.{3} desc "
      "offset {4} limit 1) as t from w) "
      "delete from {2} h using cut where h.webhook_id = cut.id and cut.t is not null and h.{3} <= cut.t",
      tx.quote(after), tx.quote(last), t.name, t.time_column, keep));
  tx.commit();
  deleted += static_cast<std::int64_t>(r.affected_rows());
  return last;
}

}  // namespace

awaitable<std::int64_t> feed_store::prune_history(std::chrono::seconds keep, int per_webhook) {
  auto cutoff = clock_.now() - keep;
  std::int64_t deleted = 0;
  for (const auto& t : history_tables) {
    for (;;) {
      auto job = [t, cutoff](pqxx::connection& c) { return prune_oldest(c, t, cutoff); };
      auto n = co_await db_.run(std::move(job));
      deleted += n;
      if (n < prune_batch_rows) break;
    }
    std::string after;
    do {
      auto job = [t, after, per_webhook, &deleted](pqxx::connection& c) {
        return prune_per_webhook(c, t, after, per_webhook, deleted);
      };
      after = co_await db_.run(std::move(job));
    } while (!after.empty());
  }
  co_return deleted;
}

awaitable<std::int64_t> feed_store::prune_feeds(std::chrono::seconds grace) {
  auto now = clock_.now();
  auto job = [now, grace](pqxx::connection& c) {
    pqxx::work tx(c);
    auto unused = "not exists (select 1 from webhooks w where w.feed_id = f.id)";
    tx.exec0(fmt::format("update feeds f set orphaned_at = {} where orphaned_at is null and {}",
                         timestamp_sql(tx, now), unused));
    // Feed rows are locked in id order (as the polls lock them); one that is leased for a
    // poll is left for the next round.
    auto r = tx.exec(fmt::format(
        "delete from feeds where id in (select id from feeds f where orphaned_at < {} - interval '{} seconds' "
        "and {} and (poll_expires_at is null or poll_expires_at < now()) order by id limit 100 "
        "for update skip locked)",
        timestamp_sql(tx, now), grace.count(), unused));
    tx.commit();
    return static_cast<std::int64_t>(r.affected_rows());
  };
  co_return co_await db_.run(std::move(job));
}

std::int64_t assign_feed(pqxx::work& tx, const std::string& webhook_id,
                         const std::string& connection_id, const std::string& object_type,
                         const std::map<std::string, std::string>& pushed_filters) {
  auto key = filter_key(pushed_filters);
  auto where = fmt::format("connection_id = {} and object_type = {} and filter_key = {}", tx.quote(connection_id),
                           tx.quote(object_type), tx.quote(key));
  // A few rounds at most: a concurrent creator may replace the dormant feed meanwhile.
  for (int round = 0;; ++round) {
    tx.exec0(fmt::format("insert into feeds(connection_id, object_type, filter_key, filters) "
                         "values ({0}, {1}, {2}, {2}::jsonb) on conflict do nothing",
                         tx.quote(connection_id), tx.quote(object_type), tx.quote(key)));
    auto f = tx.exec(fmt::format(
        "select id, head_seq, not exists (select 1 from webhooks w where w.feed_id = feeds.id and w.id <> {}) "
        "and (polls > 0 or baseline_done) from feeds where {} for update",
        tx.quote(webhook_id), where));
    if (f.empty()) {
      if (round >= 3) throw std::runtime_error("the webhook's feed was replaced concurrently; try again");
      continue;
    }
    auto id = f[0][0].as<std::int64_t>();
    if (f[0][2].as<bool>()) {  // dormant: its snapshot and log go with it (delete trigger)
      tx.exec0(fmt::format("delete from feeds where id = {}", id));
      continue;
    }
    // A webhook starts at the head of its feed's log: it sees the changes made after it.
    tx.exec0(fmt::format("update feeds set orphaned_at = null where id = {} and orphaned_at is not null", id));
    tx.exec0(fmt::format("update webhooks set feed_id = {}, cursor_seq = {} where id = {}", id,
                         f[0][1].as<std::int64_t>(), tx.quote(webhook_id)));
    return id;
  }
}

}  // namespace hookd::storage
