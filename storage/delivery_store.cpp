#include "storage/delivery_store.hpp"

#include <fmt/format.h>

#include "core/json.hpp"
#include "storage/sql.hpp"

namespace hookd::storage {

template <class T>
using awaitable = boost::asio::awaitable<T>;

namespace {

void insert_attempt(pqxx::work& tx, const std::string& webhook_id, const pending_delivery& d,
                    const attempt_record& a, sys_time at) {
  tx.exec0(fmt::format(
      "insert into delivery_attempts(delivery_id, webhook_id, attempt, at, status, latency_ms, error) "
      "values ({}, {}, {}, {}, {}, {}, {})",
      tx.quote(d.id), tx.quote(webhook_id), a.attempt, timestamp_sql(tx, at),
      a.status ? std::to_string(*a.status) : "null", a.latency_ms, tx.quote(a.error)));
}

// For a delivered initial page: its progress and its {after, head} boundary.
std::string initial_page_update(pqxx::work& tx, const pending_delivery& d) {
  if (!d.type.starts_with("INITIAL-")) return {};
  auto page = fmt::format(", initial_pages = initial_pages || jsonb_build_array(jsonb_build_object("
                          "'after', {}::text, 'head', {}))",
                          tx.quote(d.initial_after), d.snapshot_head);
  if (d.type == "INITIAL-COMPLETE") return page + ", initial_sync_done = true";
  return page + fmt::format(", initial_after = {}", tx.quote(d.initial_after));
}

}  // namespace

awaitable<delivery_target> delivery_store::target(std::string webhook_id) {
  auto job = [webhook_id](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    auto r = tx.exec1("select coalesce(w.feed_id, 0), w.cursor_seq, w.client_filters::text, "
                      "w.consecutive_failures, w.initial_sync_done, w.initial_after, "
                      "coalesce(f.baseline_done, false) from webhooks w "
                      "left join feeds f on f.id = w.feed_id where w.id = " + tx.quote(webhook_id));
    delivery_target t{r[0].as<std::int64_t>(), r[1].as<std::int64_t>(),
                      json::parse_string_map(r[2].as<std::string>()), r[3].as<int>(), r[4].as<bool>(),
                      r[5].as<std::string>(), r[6].as<bool>(), {}};
    auto pages = tx.exec("select p->>'after', (p->>'head')::bigint from webhooks w, "
                         "jsonb_array_elements(w.initial_pages) with ordinality as a(p, n) where w.id = " +
                         tx.quote(webhook_id) + " order by n");
    for (const auto& row : pages) t.initial_pages.push_back({row[0].as<std::string>(), row[1].as<std::int64_t>()});
    return t;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::optional<pending_delivery>> delivery_store::pending(std::string webhook_id) {
  auto job = [webhook_id](pqxx::connection& c) -> std::optional<pending_delivery> {
    pqxx::read_transaction tx(c);
    auto r = tx.exec("select id, seq_to, type, body, records, attempts, " +
                     millis_of("next_attempt_at") + ", initial_after, snapshot_head from deliveries "
                     "where webhook_id = " + tx.quote(webhook_id));
    if (r.empty()) return std::nullopt;
    return pending_delivery{r[0][0].as<std::string>(), r[0][1].as<std::int64_t>(),
                            r[0][2].as<std::string>(), r[0][3].as<std::string>(), r[0][4].as<int>(),
                            r[0][5].as<int>(), from_unix_millis(r[0][6].as<std::int64_t>()),
                            r[0][7].as<std::string>(), r[0][8].as<std::int64_t>()};
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::vector<delivery::log_entry>> delivery_store::unread(std::int64_t feed_id,
                                                                   std::int64_t cursor, int limit) {
  auto job = [=](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    auto r = tx.exec(fmt::format("select seq, record_id, kind, record from change_log "
                                 "where feed_id = {} and seq > {} order by seq limit {}",
                                 feed_id, cursor, limit));
    std::vector<delivery::log_entry> out;
    for (const auto& row : r)
      out.push_back({row[0].as<std::int64_t>(), row[1].as<std::string>(), row[2].as<std::string>(),
                     row[3].as<std::string>()});
    return out;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::pair<std::vector<delivery::log_entry>, std::int64_t>> delivery_store::snapshot_page(
    std::int64_t feed_id, std::string after_id, int limit) {
  auto job = [=](pqxx::connection& c) {
    // One snapshot for the records and the log head: no change is missed or sent twice
    // across the hand-over from the initial sync to VIRTUAL deliveries.
    pqxx::transaction<pqxx::isolation_level::repeatable_read, pqxx::readwrite_policy::read_only> tx(c);
    auto head = tx.exec1(fmt::format("select head_seq from feeds where id = {}", feed_id))[0]
                    .as<std::int64_t>();
    // Byte order ("C" collation), the order the deliverer compares page boundaries in.
    auto r = tx.exec(fmt::format("select record_id, record from feed_records where feed_id = {} "
                                 "and record_id > {} collate \"C\" order by record_id collate \"C\" limit {}",
                                 feed_id, tx.quote(after_id), limit));
    std::vector<delivery::log_entry> out;
    for (const auto& row : r) out.push_back({0, row[0].as<std::string>(), "created", row[1].as<std::string>()});
    return std::make_pair(std::move(out), head);
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<pending_delivery> delivery_store::record(std::string webhook_id, pending_delivery d) {
  auto now = clock_.now();
  d.attempts = 0;
  d.next_attempt_at = now;
  auto job = [webhook_id, d, now](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec0(fmt::format(
        "insert into deliveries(id, webhook_id, seq_to, type, body, records, initial_after, "
        "snapshot_head, next_attempt_at, created_at) values ({}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        tx.quote(d.id), tx.quote(webhook_id), d.seq_to, tx.quote(d.type), tx.quote(d.body),
        d.records, tx.quote(d.initial_after), d.snapshot_head, timestamp_sql(tx, now),
        timestamp_sql(tx, now)));
    tx.commit();
  };
  co_await db_.run(std::move(job));
  co_return d;
}

awaitable<void> delivery_store::advance_cursor(std::string webhook_id, std::int64_t seq_to) {
  auto job = [=](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec0(fmt::format("update webhooks set cursor_seq = greatest(cursor_seq, {}) where id = {}",
                         seq_to, tx.quote(webhook_id)));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<void> delivery_store::delivered(std::string webhook_id, pending_delivery d,
                                          attempt_record a) {
  auto now = clock_.now();
  auto job = [=](pqxx::connection& c) {
    pqxx::work tx(c);
    insert_attempt(tx, webhook_id, d, a, now);
    tx.exec0("delete from deliveries where id = " + tx.quote(d.id));
    tx.exec0(fmt::format(
        "update webhooks set cursor_seq = greatest(cursor_seq, {}), consecutive_failures = 0, "
        "delivery_healthy = true, is_healthy = source_healthy{} where id = {}",
        d.seq_to, initial_page_update(tx, d), tx.quote(webhook_id)));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<void> delivery_store::failed(std::string webhook_id, pending_delivery d, attempt_record a,
                                       std::optional<sys_time> next_attempt_at,
                                       std::string pause_reason, int unhealthy_after) {
  auto now = clock_.now();
  auto job = [=](pqxx::connection& c) {
    pqxx::work tx(c);
    insert_attempt(tx, webhook_id, d, a, now);
    tx.exec0(fmt::format("update deliveries set attempts = {}, next_attempt_at = {} where id = {}",
                         a.attempt, timestamp_sql(tx, next_attempt_at.value_or(now)), tx.quote(d.id)));
    tx.exec0(fmt::format(
        "update webhooks set consecutive_failures = consecutive_failures + 1, "
        "delivery_healthy = delivery_healthy and consecutive_failures + 1 < {0}, "
        "is_healthy = is_healthy and consecutive_failures + 1 < {0}{1} where id = {2}",
        unhealthy_after,
        pause_reason.empty() ? std::string()
                             : fmt::format(", is_paused = true, paused_reason = {}", tx.quote(pause_reason)),
        tx.quote(webhook_id)));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

}  // namespace hookd::storage
