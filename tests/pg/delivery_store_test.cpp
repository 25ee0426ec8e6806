// The delivery engine's storage against a real PostgreSQL: logged changes make a feed's
// webhooks claimable (deliver_at), claims are exclusive across instances and leases lapse,
// every write is fenced by the delivery lease, a lane that read an empty log gives the webhook
// back without losing a change logged meanwhile, and one batched write serves many webhooks
// (and many POSTs of one webhook) in one transaction.
#include <atomic>
#include <set>

#include <fmt/format.h>

#include "pg_fixture.hpp"
#include "storage/delivery_store.hpp"
#include "storage/feed_store.hpp"
#include "storage/migrations.hpp"
#include "storage/store.hpp"

using namespace hookd;
using namespace std::chrono_literals;
using changes::change;
using changes::change_kind;
using storage::lane_write;

namespace {

using test::fixed_clock;

struct engine_fixture {
  test::temp_database db;
  storage::executor ex{{db.url(), 2, 5, 30000}};
  fixed_clock clk;
  crypto::cipher cipher{std::string(32, 'k')};
  storage::store store{ex, cipher, clk};
  storage::feed_store feeds{ex, clk};
  storage::delivery_store a{ex, cipher, clk, "instance-a", 3};
  storage::delivery_store b{ex, cipher, clk, "instance-b", 3};
  storage::workspace ws;
  connection conn;

  // The instance's clock and the database's view of the leases move together.
  void advance(std::chrono::milliseconds d) {
    clk.advance(d);
    ex.run_sync([d](pqxx::connection& c) { test::age_leases(c, d); });
  }

  engine_fixture() {
    ex.run_sync([](pqxx::connection& c) { storage::apply_migrations(c); });
    ws = store.create_workspace("one", "key-one", "secret-one");
    connection c;
    c.workspace_id = ws.id;
    c.integration_type = "jsonserver";
    c.integration_name = "json-server";
    c.auth_json = R"({"api_url":"http://127.0.0.1:9"})";
    conn = test::await(store.create_connection(c));
  }

  webhook make_webhook(std::string event = "created", int page = 100) {
    webhook h;
    h.workspace_id = ws.id;
    h.connection_id = conn.id;
    h.object_type = "crm_contact";
    h.event = std::move(event);
    h.hook_url = "https://example.com/h";
    h.page_max_limit = page;
    auto saved = test::await(store.create_webhook(h, false, {}));
    REQUIRE(saved);
    return *saved;
  }
  std::int64_t feed_of(const webhook& h) { return scalar("select feed_id from webhooks where id = '" + h.id + "'"); }
  std::int64_t scalar(const std::string& sql) {
    return ex.run_sync([&](pqxx::connection& c) {
      auto r = pqxx::read_transaction(c).exec1(sql);
      return r[0].is_null() ? std::int64_t{-1} : r[0].as<std::int64_t>();
    });
  }
  void log_changes(std::int64_t feed, int from, int to) {
    std::vector<change> cs;
    for (int i = from; i <= to; ++i)
      cs.push_back({std::to_string(i), change_kind::created, fmt::format("h{}", i),
                    fmt::format(R"({{"id":"{}","name":"n{}"}})", i, i)});
    test::await(feeds.apply_changes(feed, cs, false));
  }
  std::vector<storage::lane_input> read(storage::delivery_store& s, std::vector<std::string> ids, int ahead = 32) {
    return ex.run_sync([&](pqxx::connection& c) { return s.read_lanes(c, ids, ahead); });
  }
  std::vector<storage::lane_write_result> write(storage::delivery_store& s, std::vector<lane_write> w) {
    return ex.run_sync([&](pqxx::connection& c) { return s.write_lanes(c, w); });
  }
  storage::pending_delivery delivery(std::string id, std::int64_t seq_to) {
    storage::pending_delivery d;
    d.id = std::move(id);
    d.seq_to = seq_to;
    d.type = "VIRTUAL";
    d.body = R"({"data":[]})";
    d.records = 1;
    return d;
  }
};

lane_write::failure failure(storage::pending_delivery d, int attempt, unsigned status, std::string error,
                            std::optional<sys_time> retry_at, std::string pause) {
  lane_write::failure f;
  f.delivery = std::move(d);
  f.attempt.attempt = attempt;
  f.attempt.status = status;
  f.attempt.error = std::move(error);
  f.next_attempt_at = retry_at;
  f.pause_reason = std::move(pause);
  return f;
}

lane_write idle_release(const std::string& id, std::int64_t gen) {
  return lane_write{id, {}, {}, {}, {}, lane_write::release_lease{true, gen, std::nullopt}};
}

}  // namespace

TEST_CASE_FIXTURE(engine_fixture, "logged changes make the feed's webhooks claimable; a claim is exclusive and its lease lapses") {
  auto h1 = make_webhook("created");
  auto h2 = make_webhook("updated");
  CHECK(test::await(a.claim(10, 60s)).empty());  // nothing logged yet
  log_changes(feed_of(h1), 1, 3);
  auto got_a = test::await(a.claim(10, 60s));
  CHECK(std::set<std::string>(got_a.begin(), got_a.end()) == std::set<std::string>{h1.id, h2.id});
  CHECK(test::await(b.claim(10, 60s)).empty());  // leased by a
  advance(61s);                              // a died: its leases lapse
  auto got_b = test::await(b.claim(10, 60s));
  CHECK(got_b.size() == 2);
  // a's writes are fenced off now: nothing of it lands.
  auto r = write(a, {lane_write{h1.id, {delivery("msg_a", 3)}, {}, {}, {}, {}}});
  CHECK_FALSE(r[0].held);
  CHECK(scalar("select count(*) from deliveries") == 0);
  auto in = read(a, {h1.id});
  CHECK_FALSE(in[0].leased);
}

TEST_CASE_FIXTURE(engine_fixture, "a lane reads its unread log through the cursor, as much as its next POSTs need") {
  auto h = make_webhook("created", 2);
  log_changes(feed_of(h), 1, 300);
  REQUIRE(test::await(a.claim(10, 60s)).size() == 1);
  auto in = read(a, {h.id}, 4);
  REQUIRE(in[0].hook);
  CHECK(in[0].leased);
  CHECK(in[0].unread.size() == 9);  // 4 POSTs of 2 records, and one entry to see the window end
  CHECK(in[0].unread_more);
  CHECK(in[0].unread.front().seq == 1);
  // Recorded deliveries are read back in order; then the log is not read at all.
  write(a, {lane_write{h.id, {delivery("msg_1", 2), delivery("msg_2", 4), delivery("msg_3", 6)}, {}, {}, {}, {}}});
  in = read(a, {h.id}, 4);
  REQUIRE(in[0].pending.size() == 3);
  CHECK(in[0].pending[0].id == "msg_1");
  CHECK(in[0].pending[2].id == "msg_3");
  CHECK(in[0].unread.empty());
}

TEST_CASE_FIXTURE(engine_fixture, "a page_max_limit above the usual read size is read whole: the log and the initial snapshot") {
  auto h = make_webhook("created", 6000);
  auto feed = feed_of(h);
  log_changes(feed, 1, 7000);
  REQUIRE(test::await(a.claim(10, 60s)).size() == 1);
  auto in = read(a, {h.id}, 4);
  CHECK(in[0].unread.size() == 6001);  // one page, and one entry to see that it is not the last
  CHECK(in[0].unread_more);

  // include_all on a ready feed: the first snapshot read holds a whole page too.
  webhook all;
  all.workspace_id = ws.id;
  all.connection_id = conn.id;
  all.object_type = "crm_contact";
  all.event = "created";
  all.hook_url = "https://example.com/all";
  all.page_max_limit = 6000;
  auto saved = test::await(store.create_webhook(all, true, {}));
  REQUIRE(saved);
  ex.run_sync([&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec0(fmt::format("update feeds set baseline_done = true where id = {}", feed));
    tx.commit();
  });
  REQUIRE(test::await(a.claim(10, 60s)).size() == 1);
  auto initial = read(a, {saved->id}, 4);
  REQUIRE(initial[0].hook);
  CHECK(initial[0].snapshot.size() == 6001);
  CHECK(initial[0].snapshot_more);
}

TEST_CASE_FIXTURE(engine_fixture, "a webhook moved to another feed: its outstanding delivery is cancelled and a late ack moves no cursor") {
  auto h = make_webhook("created");
  log_changes(feed_of(h), 1, 3);
  REQUIRE(test::await(a.claim(10, 60s)).size() == 1);
  write(a, {lane_write{h.id, {delivery("msg_old", 3)}, {}, {}, {}, {}}});
  REQUIRE(scalar("select count(*) from deliveries") == 1);
  // Another object type: another feed (a new one, at head 0).
  h.object_type = "crm_company";
  REQUIRE(test::await(store.update_webhook(h, {})));
  CHECK(scalar("select count(*) from deliveries") == 0);
  CHECK(scalar("select cursor_seq from webhooks where id = '" + h.id + "'") == 0);
  // The POST that was in flight is acknowledged now: recorded as an attempt, no cursor moves.
  storage::attempt_record ok{1, 200u, 5, ""};
  auto r = write(a, {lane_write{h.id, {}, {}, {{delivery("msg_old", 3), ok}}, {}, {}}});
  REQUIRE(r[0].held);
  CHECK(scalar("select cursor_seq from webhooks where id = '" + h.id + "'") == 0);
  CHECK(scalar("select count(*) from delivery_attempts where delivery_id = 'msg_old'") == 1);
}

TEST_CASE_FIXTURE(engine_fixture, "one batched write acknowledges several POSTs of one webhook and of others: each cursor moves to its last") {
  auto h1 = make_webhook("created");
  auto h2 = make_webhook("updated");
  log_changes(feed_of(h1), 1, 10);
  REQUIRE(test::await(a.claim(10, 60s)).size() == 2);
  write(a, {lane_write{h1.id, {delivery("m1", 3), delivery("m2", 6), delivery("m3", 9)}, {}, {}, {}, {}},
            lane_write{h2.id, {delivery("n1", 5)}, {}, {}, {}, {}}});
  storage::attempt_record ok{1, 200u, 3, ""};
  // Three writes of h1 (one per POST, in any order within the batch) and one of h2.
  write(a, {lane_write{h1.id, {}, {}, {{delivery("m1", 3), ok}}, {}, {}},
            lane_write{h2.id, {}, {}, {{delivery("n1", 5), ok}}, {}, {}},
            lane_write{h1.id, {}, {}, {{delivery("m3", 9), ok}}, {}, {}},
            lane_write{h1.id, {}, {}, {{delivery("m2", 6), ok}}, {}, {}}});
  CHECK(scalar("select cursor_seq from webhooks where id = '" + h1.id + "'") == 9);
  CHECK(scalar("select cursor_seq from webhooks where id = '" + h2.id + "'") == 5);
  CHECK(scalar("select count(*) from deliveries") == 0);
  CHECK(scalar("select count(*) from delivery_attempts where status = 200") == 4);
}

TEST_CASE_FIXTURE(engine_fixture, "giving a webhook back: idle clears deliver_at unless a change was logged after the read") {
  auto h = make_webhook("created");
  log_changes(feed_of(h), 1, 2);
  REQUIRE(test::await(a.claim(10, 60s)).size() == 1);
  auto in = read(a, {h.id});
  write(a, {lane_write{h.id, {}, std::int64_t{2}, {}, {}, {}}});  // (as if sent and acknowledged)
  in = read(a, {h.id});
  REQUIRE(in[0].unread.empty());
  // A poll logs a change between the lane's empty read and its release.
  log_changes(feed_of(h), 3, 3);
  write(a, {idle_release(h.id, in[0].gen)});
  CHECK(scalar("select count(*) from webhooks where deliver_at is not null and delivery_owner is null") == 1);
  auto again = test::await(b.claim(10, 60s));
  REQUIRE(again.size() == 1);  // the change is not missed
  in = read(b, {h.id});
  REQUIRE(in[0].unread.size() == 1);
  write(b, {lane_write{h.id, {}, std::int64_t{3}, {}, {}, {}}});
  in = read(b, {h.id});
  write(b, {idle_release(h.id, in[0].gen)});
  CHECK(scalar("select count(*) from webhooks where deliver_at is null and delivery_owner is null") == 1);
  CHECK(test::await(a.claim(10, 60s)).empty());
}

TEST_CASE_FIXTURE(engine_fixture, "a failed attempt waits for its retry, counts toward health, and a 410 pauses with the reason in runs") {
  auto h = make_webhook("created");
  log_changes(feed_of(h), 1, 1);
  REQUIRE(test::await(a.claim(10, 60s)).size() == 1);
  write(a, {lane_write{h.id, {delivery("m1", 1)}, {}, {}, {}, {}}});
  auto retry_at = clk.now() + 30s;
  auto f = failure(delivery("m1", 1), 1, 500, "HTTP 500", retry_at, "");
  auto r = write(a, {lane_write{h.id, {}, {}, {}, f, lane_write::release_lease{false, 0, retry_at}}});
  CHECK(r[0].held);
  CHECK(r[0].consecutive_failures == 1);
  CHECK(test::await(b.claim(10, 60s)).empty());  // not before the retry time
  advance(31s);
  REQUIRE(test::await(b.claim(10, 60s)).size() == 1);
  auto in = read(b, {h.id});
  REQUIRE(in[0].pending.size() == 1);
  CHECK(in[0].pending[0].attempts == 1);
  auto gone = failure(in[0].pending[0], 2, 410, "HTTP 410", std::nullopt, "hook_url answered 410 Gone");
  write(b, {lane_write{h.id, {}, {}, {}, gone, lane_write::release_lease{false, 0, std::nullopt}}});
  auto saved = test::await(store.get_webhook_by_id(h.id));
  REQUIRE(saved);
  CHECK(saved->is_paused);
  REQUIRE_FALSE(saved->runs.empty());
  CHECK(saved->runs.front().find("410") != std::string::npos);
  CHECK(test::await(a.claim(10, 60s)).empty());  // paused webhooks are not claimed
  CHECK(scalar("select count(*) from delivery_attempts where webhook_id = '" + h.id + "'") == 2);
}
