#include "pg_fixture.hpp"
#include "storage/feed_store.hpp"
#include "storage/migrations.hpp"
#include "storage/store.hpp"

using namespace hookd;

namespace {

using test::fixed_clock;

struct store_fixture {
  test::temp_database db;
  storage::executor ex{{db.url(), 2, 5, 30000}};
  fixed_clock clk;
  storage::store store{ex, crypto::cipher(std::string(32, 'k')), clk};
  storage::workspace ws;
  storage::workspace other;

  store_fixture() {
    ex.run_sync([](pqxx::connection& c) { storage::apply_migrations(c); });
    ws = store.create_workspace("one", "key-one", "secret-one");
    other = store.create_workspace("two", "key-two", "secret-two");
  }

  connection make_connection(const storage::workspace& w, std::string type = "jsonserver") {
    connection c;
    c.workspace_id = w.id;
    c.integration_type = std::move(type);
    c.integration_name = "json-server";
    c.categories = {"crm"};
    c.auth_json = R"({"token":"tok-plaintext","api_url":"http://x"})";
    return test::await(store.create_connection(c));
  }

  webhook make_webhook(const connection& c, std::string object_type = "crm_contact",
                       std::string event = "created") {
    webhook h;
    h.workspace_id = c.workspace_id;
    h.connection_id = c.id;
    h.object_type = std::move(object_type);
    h.event = std::move(event);
    h.hook_url = "https://example.com/h";
    auto saved = test::await(store.create_webhook(h, false));
    REQUIRE(saved);
    return *saved;
  }

  int count(const std::string& sql) {
    return ex.run_sync([&](pqxx::connection& c) {
      return pqxx::read_transaction(c).exec1(sql)[0].as<int>();
    });
  }
};

}  // namespace

TEST_CASE_FIXTURE(store_fixture, "API keys are stored hashed and find their workspace") {
  auto found = test::await(store.find_workspace_by_key("key-one"));
  REQUIRE(found);
  CHECK(found->id == ws.id);
  CHECK(found->secret == "secret-one");
  CHECK_FALSE(test::await(store.find_workspace_by_key("key-three")));
  CHECK(count("select count(*) from api_keys where key_hash like '%key-one%'") == 0);
  CHECK(count("select count(*) from workspaces where secret_sealed like '%secret-one%'") == 0);
}

TEST_CASE_FIXTURE(store_fixture, "bootstrap creates the default workspace once") {
  auto first = store.bootstrap_workspace("", "");
  REQUIRE(first.generated_api_key);
  REQUIRE(first.generated_secret);
  CHECK(test::await(store.find_workspace_by_key(*first.generated_api_key))->id == "default");
  auto second = store.bootstrap_workspace("", "");
  CHECK_FALSE(second.generated_api_key);
  CHECK(second.ws.secret == *first.generated_secret);
  auto configured = store.bootstrap_workspace("configured-key", "configured-secret");
  CHECK_FALSE(configured.generated_api_key);
  CHECK(test::await(store.find_workspace_by_key("configured-key"))->secret == "configured-secret");
  // A new configured key replaces the old configured one; other keys stay.
  store.bootstrap_workspace("rotated-key", "");
  CHECK(test::await(store.find_workspace_by_key("rotated-key")));
  CHECK_FALSE(test::await(store.find_workspace_by_key("configured-key")));
  CHECK(test::await(store.find_workspace_by_key(*first.generated_api_key)));
  CHECK(test::await(store.find_workspace_by_key("key-one")));
}

TEST_CASE_FIXTURE(store_fixture, "connections round-trip with auth sealed at rest") {
  auto c = make_connection(ws);
  auto got = test::await(store.get_connection(ws.id, c.id));
  REQUIRE(got);
  CHECK(got->auth_json == c.auth_json);
  CHECK(got->categories == std::vector<std::string>{"crm"});
  CHECK(got->created_at == clk.now());
  CHECK(count("select count(*) from connections where auth_sealed like '%tok-plaintext%'") == 0);
  CHECK_FALSE(test::await(store.get_connection(other.id, c.id)));
}

TEST_CASE_FIXTURE(store_fixture, "connection updates and deletes are confined to the workspace") {
  auto c = make_connection(ws);
  auto foreign = c;
  foreign.workspace_id = other.id;
  foreign.external_xref = "hijack";
  CHECK_FALSE(test::await(store.update_connection(foreign)));
  CHECK_FALSE(test::await(store.delete_connection(other.id, c.id)));
  clk.advance(std::chrono::seconds(5));
  c.external_xref = "mine";
  auto updated = test::await(store.update_connection(c));
  REQUIRE(updated);
  CHECK(updated->updated_at == clk.now());
  CHECK(test::await(store.get_connection(ws.id, c.id))->external_xref == "mine");
}

TEST_CASE_FIXTURE(store_fixture, "another source behind a connection starts its feeds afresh; new credentials do not") {
  auto c = make_connection(ws);
  auto h = make_webhook(c);
  storage::feed_store feeds{ex, clk};
  auto feed = count("select feed_id from webhooks where id = '" + h.id + "'");
  std::vector<changes::change> cs{{"1", changes::change_kind::created, "h1", R"({"id":"1"})"},
                                  {"2", changes::change_kind::created, "h2", R"({"id":"2"})"}};
  test::await(feeds.apply_changes(feed, cs, false));
  ex.run_sync([&](pqxx::connection& conn) {
    pqxx::work tx(conn);
    tx.exec0(fmt::format("update feeds set baseline_done = true, polls = 4, high_water = now(), "
                         "last_poll_started_at = now() where id = {}", feed));
    tx.exec0(fmt::format("insert into deliveries(id, webhook_id, seq_to, type, body, records, next_attempt_at, "
                         "created_at) values ('msg_1', '{}', 2, 'VIRTUAL', '{{}}', 2, now(), now())", h.id));
    tx.commit();
  });
  auto snapshot = [&] { return count(fmt::format("select count(*) from feed_records where feed_id = {}", feed)); };
  REQUIRE(snapshot() == 2);

  // A rotated token: the same account, nothing is reset.
  c.auth_json = R"({"token":"tok-rotated","api_url":"http://x"})";
  REQUIRE(test::await(store.update_connection(c)));
  CHECK(snapshot() == 2);
  CHECK(count(fmt::format("select count(*) from feeds where id = {} and baseline_done", feed)) == 1);
  CHECK(count("select count(*) from deliveries") == 1);

  // Another api_url: another source. A fresh, silent baseline; the old stream's delivery is
  // cancelled and the webhook skips to the log head.
  c.auth_json = R"({"token":"tok-rotated","api_url":"http://elsewhere"})";
  REQUIRE(test::await(store.update_connection(c)));
  CHECK(snapshot() == 0);
  CHECK(count(fmt::format("select count(*) from feeds where id = {} and not baseline_done and polls = 0 "
                          "and high_water is null and last_poll_started_at is null", feed)) == 1);
  CHECK(count("select count(*) from deliveries") == 0);
  CHECK(count("select cursor_seq from webhooks where id = '" + h.id + "'") == 2);

  // Another integration: the same.
  test::await(feeds.apply_changes(feed, cs, true));
  REQUIRE(snapshot() == 2);
  c.integration_type = "hubspot";
  REQUIRE(test::await(store.update_connection(c)));
  CHECK(snapshot() == 0);
}

TEST_CASE_FIXTURE(store_fixture, "refreshed tokens are saved only over the auth they were refreshed from") {
  auto c = make_connection(ws);
  auto base = c.auth_json;
  CHECK(test::await(store.save_connection_auth(c.id, base, R"({"token":"refreshed","api_url":"http://x"})")));
  CHECK(test::await(store.get_connection(ws.id, c.id))->auth_json == R"({"token":"refreshed","api_url":"http://x"})");
  // A PATCH lands while another refresh (from the older auth) is under way: the PATCH stays.
  c.auth_json = R"({"token":"patched","api_url":"http://x"})";
  REQUIRE(test::await(store.update_connection(c)));
  CHECK_FALSE(test::await(store.save_connection_auth(c.id, R"({"token":"refreshed","api_url":"http://x"})",
                                                     R"({"token":"late","api_url":"http://x"})")));
  CHECK(test::await(store.get_connection(ws.id, c.id))->auth_json == c.auth_json);
  CHECK_FALSE(test::await(store.save_connection_auth("no-such-connection", base, base)));
}

TEST_CASE_FIXTURE(store_fixture, "deleting a connection deletes its webhooks") {
  auto c = make_connection(ws);
  auto keep = make_connection(ws);
  make_webhook(c);
  make_webhook(c, "crm_contact", "deleted");
  auto kept = make_webhook(keep);
  CHECK(test::await(store.delete_connection(ws.id, c.id)));
  auto left = test::await(store.list_webhooks(ws.id, {}));
  REQUIRE(left.size() == 1);
  CHECK(left[0].id == kept.id);
}

TEST_CASE_FIXTURE(store_fixture, "a webhook needs a connection of its own workspace") {
  auto c = make_connection(other);
  webhook h;
  h.workspace_id = ws.id;
  h.connection_id = c.id;
  h.object_type = "crm_contact";
  h.event = "created";
  CHECK_FALSE(test::await(store.create_webhook(h, false)));
  CHECK(count("select count(*) from webhooks") == 0);
}

TEST_CASE_FIXTURE(store_fixture, "webhooks round-trip; db_url is sealed at rest") {
  auto c = make_connection(ws);
  webhook h;
  h.workspace_id = ws.id;
  h.connection_id = c.id;
  h.object_type = "crm_company";
  h.event = "updated";
  h.interval = 2.5;
  h.filters = {{"name", "acme"}};
  h.db_type = "postgres";
  h.db_url = "postgres://u:db-password@host/db";
  h.page_max_limit = 7;
  h.fields = "id,name";
  auto saved = test::await(store.create_webhook(h, true));
  REQUIRE(saved);
  auto got = test::await(store.get_webhook(ws.id, saved->id));
  REQUIRE(got);
  CHECK(got->integration_type == "jsonserver");
  CHECK(got->interval == doctest::Approx(2.5));
  CHECK(got->filters == h.filters);
  CHECK(got->db_url == h.db_url);
  CHECK(got->page_max_limit == 7);
  CHECK(got->fields == "id,name");
  CHECK(count("select count(*) from webhooks where db_url_sealed like '%db-password%'") == 0);
  CHECK(count("select count(*) from webhooks where include_all") == 1);
  CHECK_FALSE(test::await(store.get_webhook(other.id, saved->id)));
}

TEST_CASE_FIXTURE(store_fixture, "listing filters, sorts and pages") {
  auto c1 = make_connection(ws);
  auto c2 = make_connection(ws);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(make_webhook(i % 2 ? c2 : c1, i < 3 ? "crm_contact" : "crm_deal").id);
    clk.advance(std::chrono::seconds(1));
  }
  make_webhook(make_connection(other));  // never listed for ws

  list_query q;
  CHECK(test::await(store.list_webhooks(ws.id, q)).size() == 5);
  q.object_type = "crm_deal";
  CHECK(test::await(store.list_webhooks(ws.id, q)).size() == 2);
  q = {};
  q.connection_id = c2.id;
  CHECK(test::await(store.list_webhooks(ws.id, q)).size() == 2);
  q = {};
  q.descending = true;
  q.limit = 2;
  q.offset = 1;
  auto page = test::await(store.list_webhooks(ws.id, q));
  REQUIRE(page.size() == 2);
  CHECK(page[0].id == ids[3]);
  CHECK(page[1].id == ids[2]);
  q = {};
  q.created_lte = from_unix_millis(1'800'000'001'000);
  CHECK(test::await(store.list_webhooks(ws.id, q)).size() == 2);
  q = {};
  q.updated_gte = from_unix_millis(1'800'000'003'000);
  CHECK(test::await(store.list_webhooks(ws.id, q)).size() == 2);
  q = {};
  q.is_healthy = false;
  CHECK(test::await(store.list_webhooks(ws.id, q)).empty());
}

TEST_CASE_FIXTURE(store_fixture, "trigger makes the webhook due now and notifies") {
  auto h = make_webhook(make_connection(ws));
  pqxx::connection listener(db.url());
  struct receiver : pqxx::notification_receiver {
    using pqxx::notification_receiver::notification_receiver;
    std::string payload;
    void operator()(const std::string& p, int) override { payload = p; }
  } rx(listener, "hookd_wakeup");
  clk.advance(std::chrono::minutes(3));
  CHECK(test::await(store.trigger_webhook(ws.id, h.id)));
  CHECK_FALSE(test::await(store.trigger_webhook(other.id, h.id)));
  listener.await_notification(5, 0);
  CHECK(rx.payload == h.id);
  CHECK(count("select count(*) from webhooks where next_run_at = to_timestamp(" +
              std::to_string(to_unix_millis(clk.now()) / 1000) + ")") == 1);
}

TEST_CASE_FIXTURE(store_fixture, "secrets sealed under another key are refused, not misread") {
  make_connection(ws);
  storage::store wrong_key{ex, crypto::cipher(std::string(32, 'z')), clk};
  CHECK_THROWS(test::await(wrong_key.list_connections(ws.id, {})));
}
