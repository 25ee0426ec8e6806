// Scheduling and change detection against a real PostgreSQL: feeds and their assignment, the
// snapshot and change log (rows written per change, sequence numbers, pruning), claims under
// FOR UPDATE SKIP LOCKED with leases (two concurrent claimers never share a webhook, expired
// leases are re-claimed), feed poll leases, and run records. Time is a fixed clock.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <map>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "pg_fixture.hpp"
#include "storage/feed_store.hpp"
#include "storage/migrations.hpp"
#include "storage/store.hpp"

using namespace hookd;
using namespace std::chrono_literals;
using changes::change;
using changes::change_kind;
using storage::feed_lease;

namespace {

using test::fixed_clock;

struct sched_fixture {
  test::temp_database db;
  storage::executor ex{{db.url(), 2, 5, 30000}};
  fixed_clock clk;
  storage::store store{ex, crypto::cipher(std::string(32, 'k')), clk};
  storage::feed_store feeds{ex, clk};
  storage::workspace ws;

  // The instance's clock and the database's view of the leases move together.
  void advance(std::chrono::milliseconds d) {
    clk.advance(d);
    ex.run_sync([d](pqxx::connection& c) { test::age_leases(c, d); });
  }

  sched_fixture() {
    ex.run_sync([](pqxx::connection& c) { storage::apply_migrations(c); });
    ws = store.create_workspace("one", "key-one", "secret-one");
  }

  connection make_connection() {
    connection c;
    c.workspace_id = ws.id;
    c.integration_type = "jsonserver";
    c.integration_name = "json-server";
    c.categories = {"crm"};
    c.auth_json = R"({"api_url":"http://127.0.0.1:9"})";
    return test::await(store.create_connection(c));
  }

  webhook make_webhook(const connection& c, std::string event = "created",
                       std::string object_type = "crm_contact",
                       std::map<std::string, std::string> pushed = {}, double interval = 60) {
    webhook h;
    h.workspace_id = ws.id;
    h.connection_id = c.id;
    h.object_type = std::move(object_type);
    h.event = std::move(event);
    h.hook_url = "https://example.com/h";
    h.interval = interval;
    h.filters = pushed;
    auto saved = test::await(store.create_webhook(h, false, pushed));
    REQUIRE(saved);
    return *saved;
  }

  std::int64_t scalar(const std::string& sql) {
    return ex.run_sync([&](pqxx::connection& c) {
      auto r = pqxx::read_transaction(c).exec1(sql);
      return r[0].is_null() ? std::int64_t{-1} : r[0].as<std::int64_t>();
    });
  }
  std::string text(const std::string& sql) {
    return ex.run_sync([&](pqxx::connection& c) {
      auto r = pqxx::read_transaction(c).exec1(sql);
      return r[0].is_null() ? std::string("<null>") : r[0].as<std::string>();
    });
  }
  void exec(const std::string& sql) {
    ex.run_sync([&](pqxx::connection& c) {
      pqxx::work tx(c);
      tx.exec0(sql);
      tx.commit();
    });
  }
  std::int64_t feed_of(const webhook& h) {
    return scalar(fmt::format("select coalesce(feed_id, -1) from webhooks where id = '{}'", h.id));
  }
  std::int64_t millis(const std::string& expr) {
    return scalar(fmt::format("select (extract(epoch from ({})) * 1000)::bigint", expr));
  }
  std::int64_t now_ms() const { return to_unix_millis(clk.now()); }
  // Every webhook created so far is due (first runs are jittered by at most 30 s).
  void make_all_due() { advance(31s); }

  std::vector<storage::claimed_webhook> claim(storage::feed_store& fs, const std::string& owner,
                                              int limit = 100, std::chrono::seconds lease = 60s) {
    return test::await(fs.claim_due(owner, limit, lease));
  }
  std::vector<storage::claimed_webhook> claim(const std::string& owner, int limit = 100,
                                              std::chrono::seconds lease = 60s) {
    return claim(feeds, owner, limit, lease);
  }

  static change created(const std::string& id, const std::string& json) {
    return {id, change_kind::created, "h-" + json, json};
  }
  static change updated(const std::string& id, const std::string& json) {
    return {id, change_kind::updated, "h-" + json, json};
  }
  static change deleted(const std::string& id) { return {id, change_kind::deleted, "", ""}; }
  static std::string rec(const std::string& id, int v) {
    return fmt::format(R"({{"id":"{}","v":{}}})", id, v);
  }

  // A feed whose snapshot holds r0..r(n-1) (a baseline: no log entries).
  void baseline(std::int64_t feed, int n) {
    std::vector<change> cs;
    for (int i = 0; i < n; ++i) cs.push_back(created(fmt::format("r{}", i), rec(fmt::format("r{}", i), 0)));
    test::await(feeds.apply_changes(feed, cs, true));
  }
};

std::set<std::string> ids_of(const std::vector<storage::claimed_webhook>& ws) {
  std::set<std::string> out;
  for (const auto& w : ws) out.insert(w.id);
  return out;
}

storage::run_record ok_run(sys_time started, std::chrono::milliseconds took = 250ms) {
  storage::run_record r;
  r.status = "ok";
  r.started_at = started;
  r.finished_at = started + took;
  r.polled = true;
  r.full_scan = true;
  r.records_read = 42;
  r.changes = 3;
  r.requests = 2;
  return r;
}

}  // namespace

// ---- schema ----

TEST_CASE_FIXTURE(sched_fixture, "migrations create the feed, snapshot, change log and run tables") {
  for (const char* table : {"feeds", "feed_records", "change_log", "webhook_runs"})
    CHECK_MESSAGE(scalar(fmt::format("select count(*) from information_schema.tables where table_name = '{}'", table)) == 1,
                  table);
  for (const char* column : {"feed_id", "cursor_seq", "lease_owner", "lease_expires_at", "next_run_at"})
    CHECK_MESSAGE(scalar(fmt::format("select count(*) from information_schema.columns where table_name = 'webhooks' "
                                     "and column_name = '{}'", column)) == 1,
                  column);
  for (const char* column : {"head_seq", "baseline_done", "high_water", "pending_deletes", "poll_owner",
                             "poll_expires_at", "last_polled_at"})
    CHECK_MESSAGE(scalar(fmt::format("select count(*) from information_schema.columns where table_name = 'feeds' "
                                     "and column_name = '{}'", column)) == 1,
                  column);
  // Applying the migrations again changes nothing.
  ex.run_sync([](pqxx::connection& c) { storage::apply_migrations(c); });
  CHECK(scalar("select count(*) from feeds") == 0);
}

// ---- feeds ----

TEST_CASE_FIXTURE(sched_fixture, "webhooks on the same connection, object type and pushed filters share one feed") {
  auto c = make_connection();
  auto other = make_connection();
  auto created = make_webhook(c, "created");
  auto updated = make_webhook(c, "updated");
  auto deleted = make_webhook(c, "deleted");
  CHECK(feed_of(created) > 0);
  CHECK(feed_of(updated) == feed_of(created));
  CHECK(feed_of(deleted) == feed_of(created));
  CHECK(scalar("select count(*) from feeds") == 1);
  // Another object type, another connection: other feeds.
  CHECK(feed_of(make_webhook(c, "created", "crm_company")) != feed_of(created));
  CHECK(feed_of(make_webhook(other, "created")) != feed_of(created));
  // Pushed-down filters select the feed; the same filters share it, others do not.
  auto acme1 = make_webhook(c, "created", "crm_contact", {{"email", "a@acme.io"}});
  auto acme2 = make_webhook(c, "deleted", "crm_contact", {{"email", "a@acme.io"}});
  auto other_email = make_webhook(c, "created", "crm_contact", {{"email", "b@acme.io"}});
  auto two_filters = make_webhook(c, "created", "crm_contact", {{"email", "a@acme.io"}, {"name", "x"}});
  CHECK(feed_of(acme1) == feed_of(acme2));
  CHECK(feed_of(acme1) != feed_of(created));
  CHECK(feed_of(other_email) != feed_of(acme1));
  CHECK(feed_of(two_filters) != feed_of(acme1));
  CHECK(text(fmt::format("select filters::text from feeds where id = {}", feed_of(acme1))) ==
        R"({"email": "a@acme.io"})");
  CHECK(scalar("select count(*) from feeds") == 6);
}

TEST_CASE_FIXTURE(sched_fixture, "filter_key is canonical (sorted keys)") {
  CHECK(storage::filter_key({}) == "{}");
  std::map<std::string, std::string> a{{"b", "2"}, {"a", "1"}};
  CHECK(storage::filter_key(a) == R"({"a":"1","b":"2"})");
}

TEST_CASE_FIXTURE(sched_fixture, "a new webhook's cursor is its feed's head: it sees only later changes") {
  auto c = make_connection();
  auto first = make_webhook(c, "created");
  auto feed = feed_of(first);
  CHECK(scalar(fmt::format("select cursor_seq from webhooks where id = '{}'", first.id)) == 0);
  baseline(feed, 3);
  test::await(feeds.apply_changes(feed, {created("n1", rec("n1", 1)), updated("r0", rec("r0", 1)), deleted("r1")}, false));
  CHECK(scalar(fmt::format("select head_seq from feeds where id = {}", feed)) == 3);
  auto later = make_webhook(c, "updated");
  CHECK(feed_of(later) == feed);
  CHECK(scalar(fmt::format("select cursor_seq from webhooks where id = '{}'", later.id)) == 3);
  CHECK(scalar(fmt::format("select cursor_seq from webhooks where id = '{}'", first.id)) == 0);
}

TEST_CASE_FIXTURE(sched_fixture, "first runs are jittered within the interval (at most 30 s); a feed's webhooks stay together") {
  std::set<std::int64_t> firsts;
  const auto created_ms = now_ms();
  for (int i = 0; i < 12; ++i) {
    auto c = make_connection();
    auto h = make_webhook(c, "created");
    auto at = millis(fmt::format("(select next_run_at from webhooks where id = '{}')", h.id));
    CHECK(at >= created_ms);
    CHECK(at < created_ms + 30'000);
    firsts.insert(at);
  }
  CHECK(firsts.size() >= 6);  // spread, not all at the same moment
  // A short interval bounds the jitter.
  auto c = make_connection();
  auto quick = make_webhook(c, "created", "crm_contact", {}, 0.05);
  auto at = millis(fmt::format("(select next_run_at from webhooks where id = '{}')", quick.id));
  CHECK(at >= created_ms);
  CHECK(at < created_ms + 3'000);
  // Webhooks of one feed created together run together (one shared poll).
  auto a = make_webhook(c, "updated", "crm_company");
  auto b = make_webhook(c, "deleted", "crm_company");
  CHECK(millis(fmt::format("(select next_run_at from webhooks where id = '{}')", a.id)) ==
        millis(fmt::format("(select next_run_at from webhooks where id = '{}')", b.id)));
}

TEST_CASE_FIXTURE(sched_fixture, "a webhook created later on a feed takes the slot of the feed's webhooks of its interval") {
  auto c = make_connection();
  auto first = make_webhook(c, "created");
  auto slot = [&](const webhook& h) {
    return millis(fmt::format("(select next_slot_at from webhooks where id = '{}')", h.id));
  };
  auto run_at = [&](const webhook& h) {
    return millis(fmt::format("(select next_run_at from webhooks where id = '{}')", h.id));
  };
  advance(700ms);  // created a moment apart, e.g. by a client creating three in a row
  auto second = make_webhook(c, "updated");
  CHECK(slot(second) == slot(first));
  CHECK(run_at(second) == run_at(first));
  // Another interval keeps its own phase (its slots would not coincide anyway).
  auto other = make_webhook(c, "deleted", "crm_contact", {}, 30);
  CHECK(feed_of(other) == feed_of(first));
  CHECK(slot(other) != slot(first));
  // A sibling whose slot has passed (it is running or overdue) is not followed into the past.
  advance(31s);
  auto late = make_webhook(c, "deleted");
  CHECK(slot(late) >= now_ms());
}

TEST_CASE_FIXTURE(sched_fixture, "ensure_feed assigns a feed to a webhook that has none") {
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  auto feed = feed_of(h);
  exec(fmt::format("update webhooks set feed_id = null where id = '{}'", h.id));
  CHECK(test::await(feeds.ensure_feed(h.id)) == feed);
  CHECK(feed_of(h) == feed);
  CHECK(test::await(feeds.ensure_feed(h.id)) == feed);
}

// ---- the snapshot and the change log ----

TEST_CASE_FIXTURE(sched_fixture, "a baseline fills the snapshot and writes no log entry") {
  auto c = make_connection();
  auto feed = feed_of(make_webhook(c, "created"));
  baseline(feed, 50);
  CHECK(scalar("select count(*) from feed_records") == 50);
  CHECK(scalar("select count(*) from change_log") == 0);
  CHECK(scalar(fmt::format("select head_seq from feeds where id = {}", feed)) == 0);
  auto ids = test::await(feeds.snapshot_ids(feed));
  CHECK(ids.size() == 50);
  auto known = test::await(feeds.known_hashes(feed, {"r1", "r7", "nope"}));
  CHECK(known.size() == 2);
  CHECK(known.at("r1") == "h-" + rec("r1", 0));
  CHECK_FALSE(known.contains("nope"));
  CHECK(test::await(feeds.known_hashes(feed, {})).empty());
}

TEST_CASE_FIXTURE(sched_fixture, "apply_changes writes rows in proportion to the changes, not to the snapshot") {
  auto c = make_connection();
  auto feed = feed_of(make_webhook(c, "created"));
  baseline(feed, 200);
  // Remember every snapshot row's version: rows that did not change must not be rewritten.
  auto versions = [&] {
    return ex.run_sync([&](pqxx::connection& conn) {
      std::map<std::string, std::string> out;
      for (const auto& row : pqxx::read_transaction(conn).exec("select record_id, xmin::text from feed_records"))
        out.emplace(row[0].as<std::string>(), row[1].as<std::string>());
      return out;
    });
  };
  auto before = versions();
  auto feed_version = text(fmt::format("select xmin::text from feeds where id = {}", feed));

  SUBCASE("an empty change list writes nothing") {
    test::await(feeds.apply_changes(feed, {}, false));
    CHECK(versions() == before);
    CHECK(scalar("select count(*) from change_log") == 0);
    CHECK(text(fmt::format("select xmin::text from feeds where id = {}", feed)) == feed_version);
  }
  SUBCASE("three changes: three log rows, two snapshot rows written, one removed") {
    test::await(feeds.apply_changes(feed, {created("new", rec("new", 1)), updated("r5", rec("r5", 1)), deleted("r9")}, false));
    CHECK(scalar("select count(*) from change_log") == 3);
    CHECK(scalar("select count(*) from feed_records") == 200);
    auto after = versions();
    int rewritten = 0;
    for (const auto& [id, v] : after)
      if (!before.contains(id) || before.at(id) != v) ++rewritten;
    CHECK(rewritten == 2);  // "new" and "r5"
    CHECK_FALSE(after.contains("r9"));
    CHECK(text("select record from feed_records where record_id = 'r5'") == rec("r5", 1));
    CHECK(text("select hash from feed_records where record_id = 'r5'") == "h-" + rec("r5", 1));
  }
}

TEST_CASE_FIXTURE(sched_fixture, "change log sequence numbers are consecutive per feed and head_seq is the last") {
  auto c = make_connection();
  auto feed = feed_of(make_webhook(c, "created"));
  auto other_feed = feed_of(make_webhook(c, "created", "crm_company"));
  baseline(feed, 10);
  test::await(feeds.apply_changes(feed, {created("a", rec("a", 1)), updated("r1", rec("r1", 1))}, false));
  test::await(feeds.apply_changes(other_feed, {created("x", rec("x", 1))}, false));
  test::await(feeds.apply_changes(feed, {deleted("r2"), created("b", rec("b", 1)), updated("a", rec("a", 2))}, false));
  test::await(feeds.apply_changes(feed, {updated("r3", rec("r3", 1))}, false));
  auto log = ex.run_sync([&](pqxx::connection& conn) {
    std::vector<std::tuple<std::int64_t, std::string, std::string>> out;
    for (const auto& row : pqxx::read_transaction(conn).exec(fmt::format(
             "select seq, record_id, kind from change_log where feed_id = {} order by seq", feed)))
      out.emplace_back(row[0].as<std::int64_t>(), row[1].as<std::string>(), row[2].as<std::string>());
    return out;
  });
  std::vector<std::tuple<std::int64_t, std::string, std::string>> want = {
      {1, "a", "created"}, {2, "r1", "updated"}, {3, "r2", "deleted"},
      {4, "b", "created"}, {5, "a", "updated"}, {6, "r3", "updated"}};
  CHECK(log == want);
  CHECK(scalar(fmt::format("select head_seq from feeds where id = {}", feed)) == 6);
  CHECK(scalar(fmt::format("select head_seq from feeds where id = {}", other_feed)) == 1);
  CHECK(scalar(fmt::format("select min(seq) from change_log where feed_id = {}", other_feed)) == 1);
}

TEST_CASE_FIXTURE(sched_fixture, "a delete carries the record's last known state and removes it from the snapshot") {
  auto c = make_connection();
  auto feed = feed_of(make_webhook(c, "deleted"));
  baseline(feed, 3);
  test::await(feeds.apply_changes(feed, {updated("r1", rec("r1", 7))}, false));
  test::await(feeds.apply_changes(feed, {deleted("r1")}, false));
  CHECK(text("select kind from change_log where seq = 2") == "deleted");
  CHECK(text("select record_id from change_log where seq = 2") == "r1");
  CHECK(text("select record from change_log where seq = 2") == rec("r1", 7));
  CHECK(scalar("select count(*) from feed_records where record_id = 'r1'") == 0);
  CHECK(test::await(feeds.snapshot_ids(feed)).size() == 2);
}

TEST_CASE_FIXTURE(sched_fixture, "a large batch is written correctly (multi-row statements)") {
  auto c = make_connection();
  auto feed = feed_of(make_webhook(c, "created"));
  std::vector<change> cs;
  for (int i = 0; i < 2000; ++i) {
    auto id = fmt::format("big{}", i);
    // Quotes, backslashes, braces and commas survive the array literals.
    cs.push_back(created(id, fmt::format(R"({{"id":"{}","note":"a \"quoted\", {{braced}} back\\slash é"}})", id)));
  }
  test::await(feeds.apply_changes(feed, cs, false));
  CHECK(scalar("select count(*) from change_log") == 2000);
  CHECK(scalar("select count(*) from feed_records") == 2000);
  CHECK(scalar("select max(seq) from change_log") == 2000);
  CHECK(text("select record from change_log where record_id = 'big17'") == cs[17].json);
  CHECK(text("select record from feed_records where record_id = 'big1999'") == cs[1999].json);
}

// ---- claims and leases ----

TEST_CASE_FIXTURE(sched_fixture, "two concurrent claimers never get the same webhook") {
  // Two instances: their own executors (connection pools) and repositories, one database.
  storage::executor ex2{{db.url(), 2, 5, 30000}};
  storage::feed_store feeds2{ex2, clk};
  auto c1 = make_connection();
  auto c2 = make_connection();
  std::set<std::string> all;
  for (int i = 0; i < 150; ++i) all.insert(make_webhook(i % 2 ? c1 : c2, i % 3 ? "created" : "updated").id);
  make_all_due();

  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    std::vector<std::string> got_a, got_b;
    std::barrier start(2);
    auto claimer = [&](storage::feed_store& fs, const std::string& owner, std::vector<std::string>& got) {
      start.arrive_and_wait();
      int empty_in_a_row = 0;
      while (empty_in_a_row < 3) {
        auto batch = test::await(fs.claim_due(owner, 4, 60s));
        if (batch.empty()) {
          ++empty_in_a_row;
          std::this_thread::sleep_for(2ms);
          continue;
        }
        empty_in_a_row = 0;
        for (const auto& w : batch) got.push_back(w.id);
      }
    };
    std::thread a([&] { claimer(feeds, "instance-a", got_a); });
    std::thread b([&] { claimer(feeds2, "instance-b", got_b); });
    a.join();
    b.join();
    std::set<std::string> set_a(got_a.begin(), got_a.end()), set_b(got_b.begin(), got_b.end());
    CHECK(set_a.size() == got_a.size());  // no claimer got a webhook twice
    CHECK(set_b.size() == got_b.size());
    std::vector<std::string> both;
    std::set_intersection(set_a.begin(), set_a.end(), set_b.begin(), set_b.end(), std::back_inserter(both));
    CHECK(both.empty());
    std::set<std::string> together = set_a;
    together.insert(set_b.begin(), set_b.end());
    CHECK(together == all);
    MESSAGE("round ", round, ": instance-a claimed ", got_a.size(), ", instance-b ", got_b.size());
    CHECK(scalar("select count(*) from webhooks where lease_owner = 'instance-a'") == static_cast<std::int64_t>(set_a.size()));
    CHECK(scalar("select count(*) from webhooks where lease_owner = 'instance-b'") == static_cast<std::int64_t>(set_b.size()));
    // While the leases live nobody claims them again.
    CHECK(claim(feeds, "instance-c").empty());
    advance(61s);  // the leases lapse: next round
  }
}

TEST_CASE_FIXTURE(sched_fixture, "claim_due leases what it returns, with the slot being run") {
  auto c = make_connection();
  auto h = make_webhook(c, "created", "crm_contact", {}, 0.5);
  auto slot = millis(fmt::format("(select next_run_at from webhooks where id = '{}')", h.id));
  make_all_due();
  auto got = claim("owner-1", 10, 45s);
  REQUIRE(got.size() == 1);
  CHECK(got[0].id == h.id);
  CHECK(got[0].workspace_id == ws.id);
  CHECK(got[0].connection_id == c.id);
  CHECK(got[0].object_type == "crm_contact");
  CHECK(got[0].event == "created");
  CHECK(got[0].feed_id == feed_of(h));
  CHECK(got[0].interval_minutes == doctest::Approx(0.5));
  CHECK(to_unix_millis(got[0].scheduled_for) == slot);
  CHECK(to_unix_millis(got[0].next_slot_at) == slot);
  CHECK(text(fmt::format("select lease_owner from webhooks where id = '{}'", h.id)) == "owner-1");
  // The lease runs on the database's clock.
  auto left = millis(fmt::format("(select lease_expires_at - now() from webhooks where id = '{}')", h.id));
  CHECK(left > 44'000);
  CHECK(left <= 45'000);
}

TEST_CASE_FIXTURE(sched_fixture, "only due webhooks are claimed, oldest slot first, up to the limit") {
  auto c = make_connection();
  std::vector<webhook> hooks;
  for (int i = 0; i < 5; ++i) hooks.push_back(make_webhook(c, "created", "crm_contact", {}, 60));
  // Slots: hook i due i minutes ago; the last one is due in the future.
  for (int i = 0; i < 5; ++i)
    exec(fmt::format("update webhooks set next_run_at = to_timestamp({} / 1000.0) where id = '{}'",
                     now_ms() - (4 - i) * 60'000 + (i == 4 ? 120'000 : 0), hooks[i].id));
  auto first = claim("o", 2, 600s);
  REQUIRE(first.size() == 2);
  CHECK(first[0].id == hooks[0].id);
  CHECK(first[1].id == hooks[1].id);
  auto rest = claim("o", 10, 600s);
  CHECK(ids_of(rest) == std::set<std::string>{hooks[2].id, hooks[3].id});
  CHECK(claim("o", 10, 600s).empty());
  advance(121s);
  auto last = claim("o", 10, 600s);
  REQUIRE(last.size() == 1);
  CHECK(last[0].id == hooks[4].id);
}

TEST_CASE_FIXTURE(sched_fixture, "an expired lease is re-claimed by another owner; a live one is not") {
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  make_all_due();
  REQUIRE(claim("dead-instance", 10, 10s).size() == 1);
  CHECK(claim("survivor", 10, 10s).empty());
  advance(9s);
  CHECK(claim("survivor", 10, 10s).empty());  // still live
  advance(2s);                             // 11 s: the dead instance's lease lapsed
  auto got = claim("survivor", 10, 10s);
  REQUIRE(got.size() == 1);
  CHECK(got[0].id == h.id);
  CHECK(text(fmt::format("select lease_owner from webhooks where id = '{}'", h.id)) == "survivor");
  CHECK(claim("third", 10, 10s).empty());
}

TEST_CASE_FIXTURE(sched_fixture, "paused webhooks and webhooks of paused connections are never claimed") {
  auto c = make_connection();
  auto paused_conn = make_connection();
  auto runnable = make_webhook(c, "created");
  auto paused = make_webhook(c, "updated");
  auto on_paused_conn = make_webhook(paused_conn, "created");
  exec(fmt::format("update webhooks set is_paused = true where id = '{}'", paused.id));
  exec(fmt::format("update connections set is_paused = true where id = '{}'", paused_conn.id));
  make_all_due();
  for (int i = 0; i < 3; ++i) {
    auto got = ids_of(claim("o" + std::to_string(i)));
    CHECK(got == std::set<std::string>{runnable.id});  // its lease lapses between rounds
    CHECK_FALSE(got.contains(paused.id));
    CHECK_FALSE(got.contains(on_paused_conn.id));
    advance(61s);
  }
  CHECK(scalar(fmt::format("select count(*) from webhooks where lease_owner is not null and id in ('{}', '{}')",
                           paused.id, on_paused_conn.id)) == 0);
  // Unpaused, they run again.
  exec(fmt::format("update webhooks set is_paused = false where id = '{}'", paused.id));
  exec(fmt::format("update connections set is_paused = false where id = '{}'", paused_conn.id));
  CHECK(ids_of(claim("again")) == std::set<std::string>{runnable.id, paused.id, on_paused_conn.id});
}

TEST_CASE_FIXTURE(sched_fixture, "next_due is the earliest slot of a webhook that can run") {
  auto c = make_connection();
  CHECK_FALSE(test::await(feeds.next_due()));
  auto h = make_webhook(c, "created");
  auto slot = millis(fmt::format("(select next_run_at from webhooks where id = '{}')", h.id));
  auto next = test::await(feeds.next_due());
  REQUIRE(next);
  CHECK(to_unix_millis(*next) == slot);
  exec(fmt::format("update webhooks set is_paused = true where id = '{}'", h.id));
  CHECK_FALSE(test::await(feeds.next_due()));
}

TEST_CASE_FIXTURE(sched_fixture, "next_due does not report webhooks that cannot be claimed (paused connection, live lease)") {
  // The claim loop sleeps until next_due; a slot in the past that claim_due will not return
  // makes it re-query the database every few milliseconds.
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  make_all_due();
  SUBCASE("the only due webhook's connection is paused") {
    exec(fmt::format("update connections set is_paused = true where id = '{}'", c.id));
    REQUIRE(claim("o").empty());
    auto next = test::await(feeds.next_due());
    CHECK_MESSAGE((!next || *next > clk.now()), "next_due reported a slot claim_due will not return");
  }
  SUBCASE("the only due webhook is leased (its run is in flight)") {
    REQUIRE(claim("o", 10, 60s).size() == 1);
    REQUIRE(claim("p").empty());
    auto next = test::await(feeds.next_due());
    CHECK_MESSAGE((!next || *next > clk.now()), "next_due reported a slot claim_due will not return");
  }
}

TEST_CASE_FIXTURE(sched_fixture, "extend_leases renews only the runs and polls in flight it names, of one owner") {
  auto c = make_connection();
  make_webhook(c, "created");
  make_webhook(c, "updated", "crm_company");  // another feed
  make_webhook(c, "created", "crm_deal");     // a third, whose run's bookkeeping "failed"
  make_all_due();
  auto by_a = claim("A", 2, 10s);
  REQUIRE(by_a.size() == 2);
  REQUIRE(claim("B", 1, 10s).size() == 1);
  auto feed_a = by_a[0].feed_id;
  REQUIRE(test::await(feeds.lease_feed(feed_a, "A/" + by_a[0].id, clk.now(), 10s)).first == feed_lease::acquired);
  advance(8s);
  // B names A's run in flight: owners are checked, nothing of A's is renewed by B.
  test::await(feeds.extend_leases("B", {by_a[0].id}, {}, 10s));
  test::await(feeds.extend_leases("A", {by_a[0].id}, {"A/" + by_a[0].id}, 10s));
  advance(5s);  // 13 s after the claims: B's lease and A's unnamed one lapsed, A's named one was extended
  auto taken = claim("C", 10, 10s);
  REQUIRE(taken.size() == 2);
  CHECK(ids_of(taken).count(by_a[1].id) == 1);
  CHECK(ids_of(taken).count(by_a[0].id) == 0);
  CHECK(scalar("select count(*) from webhooks where lease_owner = 'A'") == 1);
  CHECK(test::await(feeds.lease_feed(feed_a, "C/x", clk.now(), 10s)).first == feed_lease::busy);
  test::await(feeds.release_leases("A"));
  CHECK(scalar("select count(*) from webhooks where lease_owner = 'A'") == 0);
  CHECK(scalar("select count(*) from webhooks where lease_owner = 'C'") == 2);
  CHECK(text(fmt::format("select coalesce(poll_owner, '<null>') from feeds where id = {}", feed_a)) == "<null>");
  CHECK(claim("D", 10, 10s).size() == 1);  // A's webhook is claimable again at once
}

TEST_CASE_FIXTURE(sched_fixture, "leases run on the database's clock: an instance whose clock is ahead takes no live lease") {
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  make_all_due();
  REQUIRE(claim("A", 10, 60s).size() == 1);
  auto feed = feed_of(h);
  REQUIRE(test::await(feeds.lease_feed(feed, "A/" + h.id, clk.now(), 60s)).first == feed_lease::acquired);
  // B's clock runs an hour ahead (clk.advance alone: the database's clock does not move).
  clk.advance(1h);
  CHECK(claim("B", 10, 60s).empty());
  CHECK(test::await(feeds.lease_feed(feed, "B/" + h.id, clk.now() - 1h, 60s)).first == feed_lease::busy);
  CHECK(text(fmt::format("select lease_owner from webhooks where id = '{}'", h.id)) == "A");
  CHECK(text(fmt::format("select poll_owner from feeds where id = {}", feed)) == "A/" + h.id);
  // Once the lease really lapsed (by the database's clock), it is taken over.
  ex.run_sync([](pqxx::connection& cn) { test::age_leases(cn, 61s); });
  CHECK(claim("B", 10, 60s).size() == 1);
}

// ---- runs ----

TEST_CASE_FIXTURE(sched_fixture, "finish_run records the run, sets checked_at and next_run_at, and releases the lease") {
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  make_all_due();
  auto got = claim("me");
  REQUIRE(got.size() == 1);
  auto run = ok_run(clk.now());
  auto next = got[0].scheduled_for + 60min;
  test::await(feeds.finish_run(got[0], "me", run, next, next));
  CHECK(scalar("select count(*) from webhook_runs") == 1);
  CHECK(text("select webhook_id from webhook_runs") == h.id);
  CHECK(text("select owner from webhook_runs") == "me");
  CHECK(text("select status from webhook_runs") == "ok");
  CHECK(millis("(select scheduled_for from webhook_runs)") == to_unix_millis(got[0].scheduled_for));
  CHECK(millis("(select started_at from webhook_runs)") == to_unix_millis(run.started_at));
  CHECK(millis("(select finished_at from webhook_runs)") == to_unix_millis(run.finished_at));
  CHECK(scalar("select records_read from webhook_runs") == 42);
  CHECK(scalar("select changes from webhook_runs") == 3);
  CHECK(scalar("select requests from webhook_runs") == 2);
  CHECK(scalar("select feed_id from webhook_runs") == feed_of(h));
  CHECK(millis(fmt::format("(select next_run_at from webhooks where id = '{}')", h.id)) == to_unix_millis(next));
  CHECK(millis(fmt::format("(select next_slot_at from webhooks where id = '{}')", h.id)) == to_unix_millis(next));
  CHECK(text(fmt::format("select coalesce(lease_owner, '<null>') from webhooks where id = '{}'", h.id)) == "<null>");
  auto w = test::await(store.get_webhook(ws.id, h.id));
  REQUIRE(w);
  REQUIRE(w->checked_at);
  CHECK(*w->checked_at == run.finished_at);
  REQUIRE(w->runs.size() == 1);
  CHECK(w->runs[0].find(format_iso8601(run.started_at)) != std::string::npos);
  CHECK(w->runs[0].find("ok") != std::string::npos);
  // Not due before the next slot.
  CHECK(claim("me").empty());
}

TEST_CASE_FIXTURE(sched_fixture, "the webhook keeps its 10 most recent runs, newest first; the runs table keeps all") {
  auto c = make_connection();
  auto h = make_webhook(c, "created", "crm_contact", {}, 1);
  make_all_due();
  std::vector<std::string> started;
  for (int i = 0; i < 13; ++i) {
    auto got = claim("me");
    REQUIRE(got.size() == 1);
    auto run = ok_run(clk.now());
    if (i % 4 == 3) {
      run.status = "incomplete";
      run.error = fmt::format("GET /contacts?_page={}: HTTP 500", i);
    }
    started.push_back(format_iso8601(run.started_at));
    test::await(feeds.finish_run(got[0], "me", run, got[0].scheduled_for + 1min, got[0].scheduled_for + 1min));
    advance(61s);
  }
  auto w = test::await(store.get_webhook(ws.id, h.id));
  REQUIRE(w);
  REQUIRE(w->runs.size() == 10);
  for (int i = 0; i < 10; ++i) {
    CAPTURE(i);
    CHECK(w->runs[i].find(started[12 - i]) != std::string::npos);
  }
  // runs[k] is run 12 - k: runs 11 and 7 were incomplete, with their errors.
  CHECK(w->runs[1].find("incomplete") != std::string::npos);
  CHECK(w->runs[1].find("_page=11: HTTP 500") != std::string::npos);
  CHECK(w->runs[5].find("_page=7: HTTP 500") != std::string::npos);
  CHECK(w->runs[0].find("HTTP 500") == std::string::npos);
  CHECK(scalar("select count(*) from webhook_runs") == 13);
  CHECK(scalar("select count(*) from webhook_runs where status = 'incomplete'") == 3);
}

TEST_CASE_FIXTURE(sched_fixture, "finish_run releases the lease only for the owner that holds it") {
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  make_all_due();
  auto got = claim("holder", 10, 10s);
  REQUIRE(got.size() == 1);
  auto slot = millis(fmt::format("(select next_run_at from webhooks where id = '{}')", h.id));
  // A run whose lease lapsed and was taken over must not touch the new holder's lease.
  test::await(feeds.finish_run(got[0], "someone-else", ok_run(clk.now()), got[0].scheduled_for + 60min,
                               got[0].scheduled_for + 60min));
  CHECK(text(fmt::format("select lease_owner from webhooks where id = '{}'", h.id)) == "holder");
  CHECK(millis(fmt::format("(select next_run_at from webhooks where id = '{}')", h.id)) == slot);
  CHECK(claim("third").empty());
  test::await(feeds.finish_run(got[0], "holder", ok_run(clk.now()), got[0].scheduled_for + 60min,
                               got[0].scheduled_for + 60min));
  CHECK(text(fmt::format("select coalesce(lease_owner, '<null>') from webhooks where id = '{}'", h.id)) == "<null>");
}

// ---- feed poll leases ----

TEST_CASE_FIXTURE(sched_fixture, "lease_feed: acquired, busy while another run polls, fresh after a recent poll") {
  auto c = make_connection();
  auto created_hook = make_webhook(c, "created");
  auto feed = feed_of(created_hook);
  auto first = test::await(feeds.lease_feed(feed, "i1/w1", clk.now() - 30s, 60s));
  CHECK(first.first == feed_lease::acquired);
  CHECK(first.second.id == feed);
  CHECK(first.second.connection_id == c.id);
  CHECK(first.second.object_type == "crm_contact");
  CHECK_FALSE(first.second.baseline_done);
  CHECK(first.second.polls == 0);
  CHECK_FALSE(first.second.has_deleted_webhook);
  CHECK(text(fmt::format("select poll_owner from feeds where id = {}", feed)) == "i1/w1");
  // Another run (here or elsewhere) is polling: busy.
  CHECK(test::await(feeds.lease_feed(feed, "i2/w2", clk.now() - 30s, 60s)).first == feed_lease::busy);
  // The holder may take it again.
  CHECK(test::await(feeds.lease_feed(feed, "i1/w1", clk.now() - 30s, 60s)).first == feed_lease::acquired);

  advance(2s);
  changes::poll_outcome o;
  o.complete = true;
  o.full = true;
  o.baseline_done = true;
  test::await(feeds.finish_poll(feed, o));
  const auto polled_at = clk.now();
  CHECK(text(fmt::format("select coalesce(poll_owner, '<null>') from feeds where id = {}", feed)) == "<null>");
  CHECK(millis(fmt::format("(select last_polled_at from feeds where id = {})", feed)) == to_unix_millis(polled_at));
  const auto started_at = polled_at - 2s;  // the last lease_feed that acquired it
  advance(1s);
  // A finished poll that started at or after fresh_since: share that poll.
  CHECK(test::await(feeds.lease_feed(feed, "i2/w2", started_at, 60s)).first == feed_lease::fresh);
  CHECK(test::await(feeds.lease_feed(feed, "i2/w2", started_at - 10s, 60s)).first == feed_lease::fresh);
  // A poll that started before fresh_since (e.g. before a trigger) may have missed changes
  // made just before it, even if it ended after: poll again.
  auto again = test::await(feeds.lease_feed(feed, "i2/w2", started_at + 1ms, 60s));
  CHECK(again.first == feed_lease::acquired);
  CHECK(again.second.baseline_done);
  CHECK(again.second.polls == 1);
}

TEST_CASE_FIXTURE(sched_fixture, "lease_feed: a dead run's poll lease lapses and another run takes it") {
  auto c = make_connection();
  auto feed = feed_of(make_webhook(c, "created"));
  REQUIRE(test::await(feeds.lease_feed(feed, "dead/w", clk.now(), 5s)).first == feed_lease::acquired);
  advance(4s);
  CHECK(test::await(feeds.lease_feed(feed, "live/w", clk.now(), 5s)).first == feed_lease::busy);
  advance(2s);
  CHECK(test::await(feeds.lease_feed(feed, "live/w", clk.now(), 5s)).first == feed_lease::acquired);
  CHECK(text(fmt::format("select poll_owner from feeds where id = {}", feed)) == "live/w");
}

TEST_CASE_FIXTURE(sched_fixture, "lease_feed reports whether the feed has an active deleted webhook") {
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  auto feed = feed_of(h);
  CHECK_FALSE(test::await(feeds.lease_feed(feed, "x/1", clk.now(), 5s)).second.has_deleted_webhook);
  auto d = make_webhook(c, "deleted");
  REQUIRE(feed_of(d) == feed);
  CHECK(test::await(feeds.lease_feed(feed, "x/1", clk.now(), 5s)).second.has_deleted_webhook);
  exec(fmt::format("update webhooks set is_paused = true where id = '{}'", d.id));
  CHECK_FALSE(test::await(feeds.lease_feed(feed, "x/1", clk.now(), 5s)).second.has_deleted_webhook);
}

// ---- finish_poll ----

TEST_CASE_FIXTURE(sched_fixture, "finish_poll records the poll: counters, baseline, high water, pending deletes, snapshot size") {
  auto c = make_connection();
  auto feed = feed_of(make_webhook(c, "deleted"));
  baseline(feed, 7);
  REQUIRE(test::await(feeds.lease_feed(feed, "i/w", clk.now(), 60s)).first == feed_lease::acquired);
  changes::poll_outcome o;
  o.complete = true;
  o.full = true;
  o.baseline_done = true;
  o.high_water = from_unix_millis(1'700'000'000'000);
  o.pending_deletes = {"r1", "r2"};
  test::await(feeds.finish_poll(feed, o));
  CHECK(scalar(fmt::format("select polls from feeds where id = {}", feed)) == 1);
  CHECK(scalar(fmt::format("select baseline_done::int from feeds where id = {}", feed)) == 1);
  CHECK(scalar(fmt::format("select record_count from feeds where id = {}", feed)) == 7);
  CHECK(millis(fmt::format("(select high_water from feeds where id = {})", feed)) == 1'700'000'000'000);
  CHECK(millis(fmt::format("(select last_full_scan_at from feeds where id = {})", feed)) == now_ms());
  CHECK(millis(fmt::format("(select last_complete_at from feeds where id = {})", feed)) == now_ms());
  auto state = test::await(feeds.lease_feed(feed, "i/w", clk.now() + 1s, 60s));
  REQUIRE(state.first == feed_lease::acquired);
  CHECK(state.second.pending_deletes == std::vector<std::string>{"r1", "r2"});
  CHECK(state.second.high_water == from_unix_millis(1'700'000'000'000));
  CHECK(state.second.record_count == 7);
  // The high water mark never goes back.
  advance(1s);
  o.high_water = from_unix_millis(1'600'000'000'000);
  o.pending_deletes.clear();
  test::await(feeds.finish_poll(feed, o));
  CHECK(millis(fmt::format("(select high_water from feeds where id = {})", feed)) == 1'700'000'000'000);
  CHECK(text(fmt::format("select pending_deletes::text from feeds where id = {}", feed)) == "[]");
  CHECK(scalar(fmt::format("select polls from feeds where id = {}", feed)) == 2);
}

TEST_CASE_FIXTURE(sched_fixture, "an incomplete poll keeps the baseline pending and marks the connection's webhooks unhealthy until a read succeeds") {
  auto c = make_connection();
  auto other_conn = make_connection();
  auto a = make_webhook(c, "created");
  auto b = make_webhook(c, "updated", "crm_company");  // another feed of the same connection
  auto elsewhere = make_webhook(other_conn, "created");
  auto feed = feed_of(a);
  changes::poll_outcome failed;
  failed.complete = false;
  failed.full = true;
  failed.error = "GET /contacts?_page=2: HTTP 500";
  test::await(feeds.finish_poll(feed, failed));
  CHECK(scalar(fmt::format("select baseline_done::int from feeds where id = {}", feed)) == 0);
  CHECK(scalar(fmt::format("select count(*) from feeds where id = {} and last_complete_at is null", feed)) == 1);
  CHECK_FALSE(test::await(store.get_webhook(ws.id, a.id))->is_healthy);
  CHECK_FALSE(test::await(store.get_webhook(ws.id, b.id))->is_healthy);
  CHECK(test::await(store.get_webhook(ws.id, elsewhere.id))->is_healthy);
  changes::poll_outcome ok;
  ok.complete = true;
  ok.full = true;
  ok.baseline_done = true;
  advance(1s);
  test::await(feeds.finish_poll(feed, ok));
  CHECK(test::await(store.get_webhook(ws.id, a.id))->is_healthy);
  CHECK(test::await(store.get_webhook(ws.id, b.id))->is_healthy);
}

TEST_CASE_FIXTURE(sched_fixture, "a source that reads again does not make a webhook whose deliveries fail healthy") {
  // is_healthy is false while the source fails OR the receiver fails: the source recovering
  // alone must not hide failing deliveries.
  auto c = make_connection();
  auto failing_receiver = make_webhook(c, "created");
  auto fine = make_webhook(c, "updated");
  auto feed = feed_of(failing_receiver);
  exec(fmt::format("update webhooks set delivery_healthy = false, is_healthy = false where id = '{}'",
                   failing_receiver.id));
  changes::poll_outcome failed;
  failed.full = true;
  failed.error = "connection refused";
  test::await(feeds.finish_poll(feed, failed));
  CHECK_FALSE(test::await(store.get_webhook(ws.id, failing_receiver.id))->is_healthy);
  CHECK_FALSE(test::await(store.get_webhook(ws.id, fine.id))->is_healthy);
  changes::poll_outcome ok;
  ok.complete = true;
  ok.full = true;
  ok.baseline_done = true;
  advance(1s);
  test::await(feeds.finish_poll(feed, ok));
  CHECK(test::await(store.get_webhook(ws.id, fine.id))->is_healthy);
  CHECK_FALSE(test::await(store.get_webhook(ws.id, failing_receiver.id))->is_healthy);
}

// ---- pruning ----

TEST_CASE_FIXTURE(sched_fixture, "prune_log removes only entries every webhook of the feed has passed and older than the retention") {
  auto c = make_connection();
  auto slow = make_webhook(c, "created");
  auto fast = make_webhook(c, "updated");
  auto feed = feed_of(slow);
  auto lonely_feed = feed_of(make_webhook(c, "created", "crm_company"));
  baseline(feed, 3);
  for (int i = 0; i < 6; ++i) test::await(feeds.apply_changes(feed, {created(fmt::format("n{}", i), rec("n", i))}, false));
  for (int i = 0; i < 4; ++i) test::await(feeds.apply_changes(lonely_feed, {created(fmt::format("m{}", i), rec("m", i))}, false));
  exec(fmt::format("update webhooks set cursor_seq = 2 where id = '{}'", slow.id));
  exec(fmt::format("update webhooks set cursor_seq = 5 where id = '{}'", fast.id));
  exec(fmt::format("update webhooks set cursor_seq = 4 where feed_id = {}", lonely_feed));
  // Entries 1..4 of each feed are two days old, the rest an hour old (by the store's clock).
  exec(fmt::format("update change_log set created_at = to_timestamp({} / 1000.0) - interval '2 days' where seq <= 4",
                   now_ms()));
  exec(fmt::format("update change_log set created_at = to_timestamp({} / 1000.0) - interval '1 hour' where seq > 4",
                   now_ms()));
  auto pruned = test::await(feeds.prune_log(24h));
  // feed: min cursor 2 -> seqs 1, 2; lonely feed: cursor 4 -> 1..4.
  CHECK(pruned == 6);
  CHECK(scalar(fmt::format("select min(seq) from change_log where feed_id = {}", feed)) == 3);
  CHECK(scalar(fmt::format("select count(*) from change_log where feed_id = {}", feed)) == 4);
  CHECK(scalar(fmt::format("select count(*) from change_log where feed_id = {}", lonely_feed)) == 0);
  // The slow webhook moves on: seqs 3 and 4 go; 5 and 6 are younger than the retention.
  exec(fmt::format("update webhooks set cursor_seq = 6 where id = '{}'", slow.id));
  CHECK(test::await(feeds.prune_log(24h)) == 2);
  CHECK(scalar(fmt::format("select min(seq) from change_log where feed_id = {}", feed)) == 5);
  // With a shorter retention, what both have passed (up to 5) goes.
  CHECK(test::await(feeds.prune_log(30min)) == 1);
  CHECK(scalar(fmt::format("select min(seq) from change_log where feed_id = {}", feed)) == 6);
  // Sequence numbers continue after pruning.
  test::await(feeds.apply_changes(feed, {created("late", rec("late", 1))}, false));
  CHECK(scalar(fmt::format("select max(seq) from change_log where feed_id = {}", feed)) == 7);
}

TEST_CASE_FIXTURE(sched_fixture, "prune_log measures the retention with the store's clock") {
  // Entries written "now" (by the injected clock) are younger than any retention.
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  auto feed = feed_of(h);
  test::await(feeds.apply_changes(feed, {created("a", rec("a", 1)), created("b", rec("b", 1))}, false));
  exec(fmt::format("update webhooks set cursor_seq = 2 where id = '{}'", h.id));
  CHECK(test::await(feeds.prune_log(1h)) == 0);
  CHECK(scalar("select count(*) from change_log") == 2);
  advance(2h);
  CHECK(test::await(feeds.prune_log(1h)) == 2);
}

// ---- trigger ----

TEST_CASE_FIXTURE(sched_fixture, "trigger makes the webhook due now and notifies every instance (LISTEN hookd_wakeup)") {
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  pqxx::connection listener(db.url());
  struct receiver final : pqxx::notification_receiver {
    receiver(pqxx::connection& conn) : notification_receiver(conn, "hookd_wakeup") {}
    void operator()(const std::string& payload, int) override { payloads.push_back(payload); }
    std::vector<std::string> payloads;
  } rx(listener);
  advance(5s);
  CHECK(test::await(store.trigger_webhook(ws.id, h.id)));
  for (int i = 0; i < 50 && rx.payloads.empty(); ++i) listener.await_notification(0, 100'000);
  REQUIRE(rx.payloads.size() == 1);
  CHECK(rx.payloads[0] == h.id);
  CHECK(millis(fmt::format("(select next_run_at from webhooks where id = '{}')", h.id)) == now_ms());
  auto got = claim("o");
  REQUIRE(got.size() == 1);
  CHECK(to_unix_millis(got[0].scheduled_for) == now_ms());
  // The run it gets is a poll slot (not only a delivery retry): a trigger reads the source.
  CHECK(got[0].next_slot_at <= clk.now());
  // Another workspace's key cannot trigger it.
  auto other = store.create_workspace("two", "key-two", "secret-two");
  CHECK_FALSE(test::await(store.trigger_webhook(other.id, h.id)));
}

// ---- batched bookkeeping and fencing ----

TEST_CASE_FIXTURE(sched_fixture, "lease_feeds_batch leases many feeds in one job; a feed asked for twice goes to one run") {
  auto c = make_connection();
  auto f1 = feed_of(make_webhook(c, "created", "crm_contact"));
  auto f2 = feed_of(make_webhook(c, "created", "crm_company"));
  auto f3 = feed_of(make_webhook(c, "created", "crm_deal"));
  REQUIRE(test::await(feeds.lease_feed(f3, "other/x", clk.now(), 60s)).first == feed_lease::acquired);
  auto got = ex.run_sync([&](pqxx::connection& cn) {
    return feeds.lease_feeds_batch(cn, {{f1, "i/a", clk.now()}, {f2, "i/b", clk.now()}, {f1, "i/c", clk.now()},
                                        {f3, "i/d", clk.now()}, {999999, "i/e", clk.now()}}, 60s);
  });
  REQUIRE(got.size() == 5);
  CHECK(got[1].lease == feed_lease::acquired);
  CHECK(got[1].state.id == f2);
  CHECK(got[1].state.object_type == "crm_company");
  // One of the two runs on f1 won it; the other sees it busy (and will share its poll).
  CHECK(((got[0].lease == feed_lease::acquired) != (got[2].lease == feed_lease::acquired)));
  CHECK(((got[0].lease == feed_lease::busy) || (got[2].lease == feed_lease::busy)));
  auto winner = got[0].lease == feed_lease::acquired ? "i/a" : "i/c";
  CHECK(text(fmt::format("select poll_owner from feeds where id = {}", f1)) == winner);
  CHECK(got[3].lease == feed_lease::busy);  // leased by another run
  CHECK(text(fmt::format("select poll_owner from feeds where id = {}", f3)) == "other/x");
  CHECK(got[4].lease == feed_lease::fresh);  // no such feed: nothing to poll, and an error
  CHECK(got[4].state.last_error == "the feed no longer exists");
}

TEST_CASE_FIXTURE(sched_fixture, "finish_batch records many feed groups in one transaction; a request that cannot be written fails alone") {
  auto c = make_connection();
  std::vector<webhook> hooks;
  for (const char* type : {"crm_contact", "crm_company", "crm_deal"}) hooks.push_back(make_webhook(c, "created", type));
  make_all_due();
  auto claimed = claim("me");
  REQUIRE(claimed.size() == 3);
  std::vector<storage::feed_store::finish_request> requests;
  for (auto& w : claimed) {
    REQUIRE(test::await(feeds.lease_feed(w.feed_id, "me/" + w.id, clk.now(), 60s)).first == feed_lease::acquired);
    storage::feed_store::finish_request r;
    r.owner = "me";
    changes::poll_outcome o;
    o.complete = true;
    o.full = true;
    o.baseline_done = true;
    r.poll = storage::feed_store::finished_poll{w.feed_id, "me/" + w.id, o};
    r.runs.push_back({w, ok_run(clk.now()), clk.now() + 1h, clk.now() + 1h});
    requests.push_back(r);
  }
  // Invalid UTF-8 in one run's error: PostgreSQL refuses that row.
  requests[1].runs[0].run.error = "bad \xff byte";
  auto errors = ex.run_sync([&](pqxx::connection& cn) { return feeds.finish_batch(cn, requests); });
  REQUIRE(errors.size() == 3);
  CHECK(errors[0].empty());
  CHECK_FALSE(errors[1].empty());
  CHECK(errors[2].empty());
  CHECK(scalar("select count(*) from webhook_runs") == 2);
  CHECK(scalar(fmt::format("select count(*) from webhook_runs where webhook_id = '{}'", claimed[1].id)) == 0);
  CHECK(scalar("select count(*) from feeds where polls = 1") == 2);
  CHECK(scalar(fmt::format("select polls from feeds where id = {}", claimed[1].feed_id)) == 0);
  CHECK(scalar("select count(*) from webhooks where lease_owner is null") == 2);
  CHECK(text(fmt::format("select lease_owner from webhooks where id = '{}'", claimed[1].id)) == "me");
  auto saved = test::await(store.get_webhook(ws.id, claimed[0].id));
  REQUIRE(saved);
  CHECK(saved->runs.size() == 1);
}

TEST_CASE_FIXTURE(sched_fixture, "fencing: a poll whose lease lapsed writes no page and records nothing; the new holder is untouched") {
  auto c = make_connection();
  auto h = make_webhook(c, "created");
  auto feed = feed_of(h);
  baseline(feed, 2);
  REQUIRE(test::await(feeds.lease_feed(feed, "late/w", clk.now(), 10s)).first == feed_lease::acquired);
  advance(11s);  // the late run stalled past its lease
  auto page = [&](const std::string& owner) {
    return ex.run_sync([&](pqxx::connection& cn) {
      storage::feed_store::apply_request r{feed, {created("r9", rec("r9", 1))}, false, owner};
      return feeds.apply_changes_batch(cn, {r});
    });
  };
  auto finish = [&](const std::string& owner) {
    return ex.run_sync([&](pqxx::connection& cn) {
      storage::feed_store::finish_request r;
      changes::poll_outcome o;
      o.complete = true;
      o.full = true;
      o.baseline_done = true;
      o.pending_deletes = {"r0"};
      r.poll = storage::feed_store::finished_poll{feed, owner, o};
      return feeds.finish_batch(cn, {r});
    });
  };
  SUBCASE("lapsed, nobody took it over") {
    CHECK_FALSE(page("late/w")[0].empty());
    CHECK_FALSE(finish("late/w")[0].empty());
  }
  SUBCASE("lapsed and taken over by another run") {
    REQUIRE(test::await(feeds.lease_feed(feed, "new/w", clk.now() - 1h, 10s)).first == feed_lease::acquired);
    CHECK_FALSE(page("late/w")[0].empty());
    CHECK_FALSE(finish("late/w")[0].empty());
    CHECK(text(fmt::format("select poll_owner from feeds where id = {}", feed)) == "new/w");
    // The holder writes.
    CHECK(page("new/w")[0].empty());
    CHECK(scalar("select count(*) from change_log") == 1);
    CHECK(finish("new/w")[0].empty());
    CHECK(scalar(fmt::format("select polls from feeds where id = {}", feed)) == 1);
    return;
  }
  CHECK(scalar("select count(*) from change_log") == 0);
  CHECK(scalar(fmt::format("select count(*) from feed_records where feed_id = {}", feed)) == 2);
  CHECK(scalar(fmt::format("select polls from feeds where id = {}", feed)) == 0);
  CHECK(text(fmt::format("select pending_deletes::text from feeds where id = {}", feed)) == "[]");
}

// ---- bounded storage ----

TEST_CASE_FIXTURE(sched_fixture, "prune_history keeps runs and attempts by age and the newest N per webhook, in batches") {
  auto c = make_connection();
  auto a = make_webhook(c, "created");
  auto b = make_webhook(c, "updated");
  auto at = [&](std::chrono::seconds ago) { return to_unix_millis(clk.now() - ago); };
  auto add = [&](const webhook& h, int n, std::chrono::seconds first_ago, std::chrono::seconds step) {
    // Oldest first, as the scheduler inserts them (ids follow time).
    exec(fmt::format(
        "insert into webhook_runs(webhook_id, owner, scheduled_for, started_at, finished_at, status, polled, full_scan) "
        "select '{0}', 'me', t, t, t, 'ok', true, false from (select to_timestamp(({1} + g * {2})::double precision "
        "/ 1000) as t from generate_series(0, {3}) g) s",
        h.id, at(first_ago), std::chrono::milliseconds(step).count(), n - 1));
    exec(fmt::format(
        "insert into delivery_attempts(delivery_id, webhook_id, attempt, at, status, latency_ms) "
        "select 'd', '{0}', 1, t, 200, 1 from (select to_timestamp(({1} + g * {2})::double precision / 1000) as t "
        "from generate_series(0, {3}) g) s",
        h.id, at(first_ago), std::chrono::milliseconds(step).count(), n - 1));
  };
  add(b, 6000, 100h, 1s);  // more than one batch, all older than the retention
  add(a, 30, 1h, 1s);      // recent: only the cap applies
  add(b, 5, 1h, 1s);
  auto deleted = test::await(feeds.prune_history(24h, 10));
  CHECK(deleted == 2 * (6000 + 20));
  for (const char* table : {"webhook_runs", "delivery_attempts"}) {
    CAPTURE(table);
    CHECK(scalar(fmt::format("select count(*) from {} where webhook_id = '{}'", table, a.id)) == 10);
    CHECK(scalar(fmt::format("select count(*) from {} where webhook_id = '{}'", table, b.id)) == 5);
  }
  // The newest are the ones kept.
  CHECK(millis(fmt::format("(select min(started_at) from webhook_runs where webhook_id = '{}')", a.id)) ==
        at(1h) + 20'000);
  CHECK(test::await(feeds.prune_history(24h, 10)) == 0);
}

TEST_CASE_FIXTURE(sched_fixture, "an unused feed is removed with its snapshot and log after the grace period; a used one never") {
  auto c = make_connection();
  auto gone = make_webhook(c, "created");
  auto kept = make_webhook(c, "created", "crm_company");
  auto feed = feed_of(gone);
  baseline(feed, 3);
  test::await(feeds.apply_changes(feed, {updated("r1", rec("r1", 1))}, false));
  REQUIRE(test::await(store.delete_webhook(ws.id, gone.id)));
  CHECK(test::await(feeds.prune_feeds(1h)) == 0);  // marked now, removed later
  CHECK(scalar(fmt::format("select count(*) from feeds where id = {} and orphaned_at is not null", feed)) == 1);
  advance(30min);
  CHECK(test::await(feeds.prune_feeds(1h)) == 0);
  advance(31min);
  CHECK(test::await(feeds.prune_feeds(1h)) == 1);
  CHECK(scalar(fmt::format("select count(*) from feeds where id = {}", feed)) == 0);
  CHECK(scalar(fmt::format("select count(*) from feed_records where feed_id = {}", feed)) == 0);
  CHECK(scalar(fmt::format("select count(*) from change_log where feed_id = {}", feed)) == 0);
  CHECK(scalar(fmt::format("select count(*) from feeds where id = {}", feed_of(kept))) == 1);
}

TEST_CASE_FIXTURE(sched_fixture, "a new webhook on a dormant feed starts from a fresh baseline, not its stale snapshot") {
  auto c = make_connection();
  auto old = make_webhook(c, "created");
  auto feed = feed_of(old);
  baseline(feed, 3);
  changes::poll_outcome o;
  o.complete = o.full = o.baseline_done = true;
  test::await(feeds.finish_poll(feed, o));
  REQUIRE(test::await(store.delete_webhook(ws.id, old.id)));
  auto fresh = make_webhook(c, "updated");
  auto now_feed = feed_of(fresh);
  CHECK(now_feed != feed);
  CHECK(scalar(fmt::format("select count(*) from feeds where id = {}", feed)) == 0);
  CHECK(scalar(fmt::format("select count(*) from feed_records where feed_id = {}", feed)) == 0);
  CHECK(scalar(fmt::format("select baseline_done::int from feeds where id = {}", now_feed)) == 0);
  // A feed in use is shared as before.
  CHECK(feed_of(make_webhook(c, "deleted")) == now_feed);
}
