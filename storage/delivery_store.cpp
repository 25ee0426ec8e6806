#include "storage/delivery_store.hpp"

#include <algorithm>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "core/json.hpp"
#include "storage/rows.hpp"
#include "storage/sql.hpp"

namespace hookd::storage {

template <class T>
using awaitable = boost::asio::awaitable<T>;

namespace {

constexpr int max_log_read = 5000;  // log entries read for one lane at most...

// ... unless one page needs more: a read must hold a whole page and one entry beyond it (which
// tells whether the page is the last), or a page_max_limit above max_log_read would never fill.
std::int64_t read_limit(int page_max_limit, int ahead) {
  auto page = std::int64_t{page_max_limit};
  return std::max(page + 1, std::min<std::int64_t>(max_log_read, page * ahead + 1));
}

std::string bigint_array_literal(const std::vector<std::int64_t>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    out += std::to_string(values[i]);
  }
  out.push_back('}');
  return out;
}

std::string ids_sql(pqxx::transaction_base& tx, const std::vector<std::string>& ids) {
  return tx.quote(text_array_literal(ids)) + "::text[]";
}

std::string run_entry(sys_time at, const std::string& reason) {
  return fmt::format("{} paused: {}", format_iso8601(at), reason);
}

}  // namespace

awaitable<std::vector<std::string>> delivery_store::claim(int limit, std::chrono::seconds lease) {
  auto now = clock_.now();
  auto job = [this, limit, lease, now](pqxx::connection& c) {
    pqxx::work tx(c);
    auto ts = timestamp_sql(tx, now);
    auto r = tx.exec(fmt::format(
        "with due as (select id from webhooks where deliver_at <= {0} and not is_paused "
        "and hook_url <> '' and (delivery_expires_at is null or delivery_expires_at < now()) "
        "order by deliver_at limit {1} for update skip locked) "
        "update webhooks w set delivery_owner = {2}, delivery_expires_at = now() + interval '{3} seconds' "
        "from due where w.id = due.id returning w.id",
        ts, limit, tx.quote(owner_), lease.count()));
    tx.commit();
    std::vector<std::string> out;
    out.reserve(r.size());
    for (const auto& row : r) out.push_back(row[0].as<std::string>());
    return out;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::optional<sys_time>> delivery_store::next_due() {
  auto job = [](pqxx::connection& c) -> std::optional<sys_time> {
    pqxx::read_transaction tx(c);
    // A webhook leased elsewhere is due when its lease lapses (by the database's clock, which
    // is close enough to this instance's for a wake-up time).
    // Through the deliver_at index (order by ... limit keeps the planner on it): the earliest
    // webhooks with work, not a scan of every webhook.
    auto r = tx.exec1(fmt::format(
        "select {} from (select deliver_at, delivery_expires_at from webhooks where deliver_at is not null "
        "and not is_paused and hook_url <> '' order by deliver_at limit 1000) w",
        millis_of("min(case when delivery_expires_at >= now() then "
                  "greatest(deliver_at, delivery_expires_at) else deliver_at end)")));
    if (r[0].is_null()) return std::nullopt;
    return from_unix_millis(r[0].as<std::int64_t>());
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<void> delivery_store::extend_leases(std::vector<std::string> ids, std::chrono::seconds lease) {
  auto job = [this, lease, ids = std::move(ids)](pqxx::connection& c) {
    pqxx::work tx(c);
    // In id order, as the batched writes lock webhook rows (no deadlock with them).
    tx.exec0(fmt::format("update webhooks set delivery_expires_at = now() + interval '{} seconds' "
                         "where id in (select id from webhooks where delivery_owner = {} and id = any({}) "
                         "order by id for update)",
                         lease.count(), tx.quote(owner_), ids_sql(tx, ids)));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<void> delivery_store::release_leases() {
  auto job = [this](pqxx::connection& c) {
    pqxx::work tx(c);
    // deliver_at stays: another instance (or the next start) carries on where this one stopped.
    tx.exec0("update webhooks set delivery_owner = null, delivery_expires_at = null "
             "where delivery_owner = " + tx.quote(owner_));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

// ---------------------------------------------------------------------------------------------
// read_lanes: one repeatable-read snapshot, four queries for any number of lanes.

namespace {

void read_targets(pqxx::transaction_base& tx, const std::vector<std::string>& ids,
                  const std::string& owner, std::unordered_map<std::string, lane_input*>& by_id) {
  auto r = tx.exec(fmt::format(
      "select w.id, coalesce(w.feed_id, 0), w.cursor_seq, w.client_filters::text, "
      "w.consecutive_failures, w.initial_sync_done, w.initial_after, coalesce(f.baseline_done, false), "
      "coalesce(w.delivery_owner = {1}, false), w.deliver_gen "
      "from webhooks w left join feeds f on f.id = w.feed_id where w.id = any({0})",
      ids_sql(tx, ids), tx.quote(owner)));
  for (const auto& row : r) {
    auto& in = *by_id.at(row[0].as<std::string>());
    in.target = delivery_target{row[1].as<std::int64_t>(), row[2].as<std::int64_t>(),
                                json::parse_string_map(row[3].as<std::string>()), row[4].as<int>(),
                                row[5].as<bool>(), row[6].as<std::string>(), row[7].as<bool>(), {}};
    in.leased = row[8].as<bool>();
    in.gen = row[9].as<std::int64_t>();
  }
}

void read_pending(pqxx::transaction_base& tx, const std::vector<std::string>& ids,
                  std::unordered_map<std::string, lane_input*>& by_id) {
  auto r = tx.exec(fmt::format(
      "select webhook_id, id, seq_to, type, body, records, attempts, {}, initial_after, snapshot_head "
      "from deliveries where webhook_id = any({}) order by webhook_id, ord",
      millis_of("next_attempt_at"), ids_sql(tx, ids)));
  for (const auto& row : r)
    by_id.at(row[0].as<std::string>())
        ->pending.push_back({row[1].as<std::string>(), row[2].as<std::int64_t>(),
                             row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<int>(),
                             row[6].as<int>(), from_unix_millis(row[7].as<std::int64_t>()),
                             row[8].as<std::string>(), row[9].as<std::int64_t>()});
}

// The unread log entries of lanes with nothing pending, through the (feed_id, seq) key:
// only as many entries as the next POSTs can use.
void read_unread(pqxx::transaction_base& tx, std::vector<lane_input*>& lanes, int ahead) {
  std::vector<std::string> ids;
  std::vector<std::int64_t> feeds, cursors, limits;
  std::unordered_map<std::string, lane_input*> by_id;
  for (auto* in : lanes) {
    ids.push_back(in->webhook_id);
    feeds.push_back(in->target.feed_id);
    cursors.push_back(in->target.cursor_seq);
    limits.push_back(read_limit(in->hook->page_max_limit, ahead));
    by_id[in->webhook_id] = in;
  }
  if (ids.empty()) return;
  auto r = tx.exec(fmt::format(
      "select u.wid, l.seq, l.record_id, l.kind, l.record "
      "from unnest({}, {}::bigint[], {}::bigint[], {}::bigint[]) as u(wid, feed, cur, lim) "
      "cross join lateral (select seq, record_id, kind, record from change_log "
      "where feed_id = u.feed and seq > u.cur order by seq limit u.lim) l order by u.wid, l.seq",
      ids_sql(tx, ids), tx.quote(bigint_array_literal(feeds)), tx.quote(bigint_array_literal(cursors)),
      tx.quote(bigint_array_literal(limits))));
  for (const auto& row : r)
    by_id.at(row[0].as<std::string>())
        ->unread.push_back({row[1].as<std::int64_t>(), row[2].as<std::string>(),
                            row[3].as<std::string>(), row[4].as<std::string>()});
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto* in = by_id.at(ids[i]);
    in->unread_more = static_cast<std::int64_t>(in->unread.size()) >= limits[i];
  }
}

// Initial sync: the next snapshot records (id order, byte-wise) and the log head read with them.
void read_snapshot(pqxx::transaction_base& tx, lane_input& in, int ahead) {
  auto limit = read_limit(in.hook->page_max_limit, ahead);
  in.snapshot_head = tx.exec1(fmt::format("select head_seq from feeds where id = {}", in.target.feed_id))[0]
                         .as<std::int64_t>();
  auto r = tx.exec(fmt::format("select record_id, record from feed_records where feed_id = {} "
                               "and record_id > {} collate \"C\" order by record_id collate \"C\" limit {}",
                               in.target.feed_id, tx.quote(in.target.initial_after), limit));
  for (const auto& row : r) in.snapshot.push_back({0, row[0].as<std::string>(), "created", row[1].as<std::string>()});
  in.snapshot_more = static_cast<std::int64_t>(in.snapshot.size()) >= limit;
  auto pages = tx.exec(fmt::format(
      "select p->>'after', (p->>'head')::bigint from webhooks w, "
      "jsonb_array_elements(w.initial_pages) with ordinality as a(p, n) where w.id = {} order by n",
      tx.quote(in.webhook_id)));
  for (const auto& row : pages)
    in.target.initial_pages.push_back({row[0].as<std::string>(), row[1].as<std::int64_t>()});
}

void read_initial_pages(pqxx::transaction_base& tx, const std::vector<std::string>& ids,
                        std::unordered_map<std::string, lane_input*>& by_id) {
  // The boundaries of delivered initial pages: VIRTUAL deliveries skip what a page carried.
  auto r = tx.exec(fmt::format(
      "select w.id, p->>'after', (p->>'head')::bigint from webhooks w, "
      "jsonb_array_elements(w.initial_pages) with ordinality as a(p, n) "
      "where w.id = any({}) and jsonb_array_length(w.initial_pages) > 0 order by w.id, n",
      ids_sql(tx, ids)));
  for (const auto& row : r)
    by_id.at(row[0].as<std::string>())
        ->target.initial_pages.push_back({row[1].as<std::string>(), row[2].as<std::int64_t>()});
}

}  // namespace

std::vector<lane_input> delivery_store::read_lanes(pqxx::connection& c,
                                                   const std::vector<std::string>& ids,
                                                   int ahead) const {
  // One snapshot: the pending deliveries, the cursor, the log and deliver_gen agree.
  pqxx::transaction<pqxx::isolation_level::repeatable_read, pqxx::readwrite_policy::read_only> tx(c);
  std::vector<lane_input> out(ids.size());
  std::unordered_map<std::string, lane_input*> by_id;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    out[i].webhook_id = ids[i];
    by_id[ids[i]] = &out[i];
  }
  for (const auto& row : tx.exec("select " + webhook_columns + " from webhooks where id = any(" +
                                 ids_sql(tx, ids) + ")"))
    by_id.at(row[0].as<std::string>())->hook = webhook_from_row(row, cipher_);
  read_targets(tx, ids, owner_, by_id);
  read_pending(tx, ids, by_id);
  std::vector<lane_input*> log_readers;
  std::vector<std::string> virtual_ids;
  for (auto& in : out) {
    if (!in.hook || !in.leased || !in.pending.empty() || !in.target.feed_id) continue;
    if (!in.target.initial_sync_done) {
      if (in.target.feed_ready) read_snapshot(tx, in, ahead);
      continue;
    }
    log_readers.push_back(&in);
    virtual_ids.push_back(in.webhook_id);
  }
  read_unread(tx, log_readers, ahead);
  if (!virtual_ids.empty()) read_initial_pages(tx, virtual_ids, by_id);
  tx.commit();
  return out;
}

// ---------------------------------------------------------------------------------------------
// write_lanes: one transaction, a few multi-row statements for any number of lanes.

namespace {

struct write_context {
  pqxx::work& tx;
  std::string now;  // SQL timestamp
  sys_time now_time;
  std::string now_text;  // the same, as COPY text
};

// Bulk rows go in with COPY: no SQL text to build, escape and parse for kilobytes of bodies.
void insert_records(write_context& w, const std::vector<const lane_write*>& writes) {
  bool any = std::any_of(writes.begin(), writes.end(), [](const lane_write* lw) { return !lw->record.empty(); });
  if (!any) return;
  // Rows arrive in the order given, so ord (the send order) follows it.
  pqxx::stream_to copy(w.tx, "deliveries",
                       std::vector<std::string>{"id", "webhook_id", "seq_to", "type", "body", "records",
                                                "initial_after", "snapshot_head", "attempts",
                                                "next_attempt_at", "created_at"});
  for (const auto* lw : writes)
    for (const auto& d : lw->record)
      copy << std::make_tuple(d.id, lw->webhook_id, d.seq_to, d.type, d.body, d.records, d.initial_after,
                              d.snapshot_head, 0, w.now_text, w.now_text);
  copy.complete();
}

void skip_cursors(write_context& w, const std::vector<const lane_write*>& writes) {
  std::map<std::string, std::int64_t> skip_of;  // one row per webhook (see update_cursors)
  for (const auto* lw : writes)
    if (lw->skip_to) skip_of[lw->webhook_id] = std::max(skip_of[lw->webhook_id], *lw->skip_to);
  if (skip_of.empty()) return;
  std::vector<std::string> ids;
  std::vector<std::int64_t> seqs;
  for (const auto& [id, seq] : skip_of) {
    ids.push_back(id);
    seqs.push_back(seq);
  }
  w.tx.exec0(fmt::format(
      "update webhooks w set cursor_seq = greatest(w.cursor_seq, u.seq) "
      "from unnest({}::text[], {}::bigint[]) as u(id, seq) where w.id = u.id",
      w.tx.quote(text_array_literal(ids)), w.tx.quote(bigint_array_literal(seqs))));
}

struct attempt_row {
  const std::string* delivery_id;
  const std::string* webhook_id;
  const attempt_record* attempt;
};

void insert_attempts(write_context& w, const std::vector<attempt_row>& rows) {
  if (rows.empty()) return;
  pqxx::stream_to copy(w.tx, "delivery_attempts",
                       std::vector<std::string>{"delivery_id", "webhook_id", "attempt", "at", "status",
                                                "latency_ms", "error"});
  for (const auto& r : rows) {
    // status: null when there was no HTTP response.
    auto status = r.attempt->status ? std::to_string(*r.attempt->status) : std::string();
    copy << std::make_tuple(*r.delivery_id, *r.webhook_id, r.attempt->attempt, w.now_text,
                            r.attempt->status ? status.c_str() : static_cast<const char*>(nullptr),
                            r.attempt->latency_ms, r.attempt->error);
  }
  copy.complete();
}

// Acknowledged deliveries: their attempts recorded, the deliveries gone (before the rows lock).
// Returns the ids that were still there: a delivery cancelled meanwhile (its webhook moved to
// another feed) moves no cursor.
std::unordered_set<std::string> delivered_rows(write_context& w, const std::vector<const lane_write*>& writes) {
  std::vector<attempt_row> rows;
  std::vector<std::string> ids;
  for (const auto* lw : writes)
    for (const auto& [d, a] : lw->delivered) {
      rows.push_back({&d.id, &lw->webhook_id, &a});
      ids.push_back(d.id);
    }
  std::unordered_set<std::string> gone;
  if (ids.empty()) return gone;
  insert_attempts(w, rows);
  auto r = w.tx.exec("delete from deliveries where id = any(" + w.tx.quote(text_array_literal(ids)) +
                     "::text[]) returning id");
  for (const auto& row : r) gone.insert(row[0].as<std::string>());
  return gone;
}

// For a delivered initial page: its progress and its {after, head} boundary.
std::string initial_page_update(pqxx::work& tx, const pending_delivery& d) {
  auto page = fmt::format(", initial_pages = initial_pages || jsonb_build_array(jsonb_build_object("
                          "'after', {}::text, 'head', {}))",
                          tx.quote(d.initial_after), d.snapshot_head);
  if (d.type == "INITIAL-COMPLETE") return page + ", initial_sync_done = true";
  return page + fmt::format(", initial_after = {}", tx.quote(d.initial_after));
}

// ... and the webhooks' cursors (after the rows lock).
void update_cursors(write_context& w, const std::vector<const lane_write*>& writes,
                    const std::unordered_set<std::string>& acknowledged) {
  auto& tx = w.tx;
  // One row per webhook: UPDATE ... FROM applies only one of several matching rows.
  std::map<std::string, std::int64_t> cursor_of;
  for (const auto* lw : writes) {
    for (const auto& [d, a] : lw->delivered) {
      if (!acknowledged.contains(d.id)) continue;
      auto& seq = cursor_of[lw->webhook_id];
      seq = std::max(seq, d.seq_to);
      if (d.type.starts_with("INITIAL-"))
        tx.exec0("update webhooks set id = id" + initial_page_update(tx, d) + " where id = " +
                 tx.quote(lw->webhook_id));
    }
  }
  if (cursor_of.empty()) return;
  std::vector<std::string> hooks;
  std::vector<std::int64_t> seqs;
  for (const auto& [id, seq] : cursor_of) {
    hooks.push_back(id);
    seqs.push_back(seq);
  }
  tx.exec0(fmt::format(
      "update webhooks w set cursor_seq = greatest(w.cursor_seq, u.seq), consecutive_failures = 0, "
      "delivery_healthy = true, is_healthy = w.source_healthy "
      "from unnest({}::text[], {}::bigint[]) as u(id, seq) where w.id = u.id",
      tx.quote(text_array_literal(hooks)), tx.quote(bigint_array_literal(seqs))));
}

// A failed attempt is rare next to the successes: one statement set per failure.
int write_failed(write_context& w, const lane_write& lw, int unhealthy_after) {
  auto& tx = w.tx;
  const auto& f = *lw.failed;
  insert_attempts(w, {{&f.delivery.id, &lw.webhook_id, &f.attempt}});
  tx.exec0(fmt::format("update deliveries set attempts = {}, next_attempt_at = {} where id = {}",
                       f.attempt.attempt,
                       f.next_attempt_at ? timestamp_sql(tx, *f.next_attempt_at) : w.now,
                       tx.quote(f.delivery.id)));
  std::string pause;
  if (!f.pause_reason.empty()) {
    // Paused: the reason is in paused_reason and, like a run, at the head of `runs` (a row of
    // the run history, which `runs` is read from).
    pause = fmt::format(", is_paused = true, paused_reason = {0}", tx.quote(f.pause_reason));
    tx.exec0(fmt::format(
        "insert into webhook_runs(webhook_id, feed_id, owner, scheduled_for, started_at, finished_at, status, "
        "polled, full_scan, error, summary) select id, feed_id, '', {0}, {0}, {0}, 'paused', false, false, {1}, {2} "
        "from webhooks where id = {3}",
        w.now, tx.quote(f.pause_reason), tx.quote(run_entry(w.now_time, f.pause_reason)), tx.quote(lw.webhook_id)));
  }
  auto r = tx.exec1(fmt::format(
      "update webhooks set consecutive_failures = consecutive_failures + 1, "
      "delivery_healthy = delivery_healthy and consecutive_failures + 1 < {0}, "
      "is_healthy = is_healthy and consecutive_failures + 1 < {0}{1} where id = {2} "
      "returning consecutive_failures",
      unhealthy_after, pause, tx.quote(lw.webhook_id)));
  return r[0].as<int>();
}

void release(write_context& w, const std::vector<const lane_write*>& writes) {
  std::vector<std::string> ids;
  std::vector<std::int64_t> gens, ats;  // at -1: idle (null unless deliver_gen moved)
  for (const auto* lw : writes)
    if (lw->release) {
      ids.push_back(lw->webhook_id);
      gens.push_back(lw->release->gen);
      ats.push_back(lw->release->idle ? -1 : to_unix_millis(lw->release->deliver_at.value_or(w.now_time)));
    }
  if (ids.empty()) return;
  // deliver_gen moved since the lane read an empty log: a change came meanwhile, look again now.
  w.tx.exec0(fmt::format(
      "update webhooks w set delivery_owner = null, delivery_expires_at = null, deliver_at = "
      "case when u.at >= 0 then to_timestamp(u.at::double precision / 1000) "
      "when w.deliver_gen = u.gen then null else {} end "
      "from unnest({}::text[], {}::bigint[], {}::bigint[]) as u(id, gen, at) where w.id = u.id",
      w.now, w.tx.quote(text_array_literal(ids)), w.tx.quote(bigint_array_literal(gens)),
      w.tx.quote(bigint_array_literal(ats))));
}

std::set<std::string> leases_held(pqxx::work& tx, const std::set<std::string>& ids,
                                  const std::string& owner, bool lock) {
  std::set<std::string> held;
  for (const auto& row : tx.exec(fmt::format(
           "select id from webhooks where id = any({}) and delivery_owner = {}{}",
           tx.quote(text_array_literal({ids.begin(), ids.end()})) + "::text[]", tx.quote(owner),
           lock ? " order by id for update" : "")))
    held.insert(row[0].as<std::string>());
  return held;
}

}  // namespace

std::vector<lane_write_result> delivery_store::write_lanes(pqxx::connection& c,
                                                           const std::vector<lane_write>& writes) const {
  pqxx::work tx(c);
  auto now = clock_.now();
  write_context w{tx, timestamp_sql(tx, now), now, format_iso8601(now)};
  std::set<std::string> all;
  for (const auto& lw : writes) all.insert(lw.webhook_id);
  // Fencing: only the holder of a webhook's delivery lease writes for it. The inserts come
  // first, without locking the webhook rows (a poll logging changes updates them meanwhile);
  // the rows are locked, in id order, only for the last statements, and the leases checked
  // again: one that lapsed in between rolls the whole batch back (its lanes read again).
  auto held = leases_held(tx, all, owner_, false);
  std::vector<const lane_write*> live;
  for (const auto& lw : writes)
    if (held.contains(lw.webhook_id)) live.push_back(&lw);
  insert_records(w, live);
  auto acknowledged = delivered_rows(w, live);
  if (!held.empty() && leases_held(tx, held, owner_, true) != held)
    throw std::runtime_error("a delivery lease changed hands during a batched write");
  std::vector<lane_write_result> out(writes.size());
  skip_cursors(w, live);
  update_cursors(w, live, acknowledged);
  for (std::size_t i = 0; i < writes.size(); ++i) {
    out[i].held = held.contains(writes[i].webhook_id);
    if (out[i].held && writes[i].failed) out[i].consecutive_failures = write_failed(w, writes[i], unhealthy_after_);
  }
  release(w, live);
  tx.commit();
  return out;
}

}  // namespace hookd::storage
