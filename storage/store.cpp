#include "storage/store.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>
#include <unordered_map>

#include "core/json.hpp"
#include "storage/feed_store.hpp"
#include "storage/migrations.hpp"
#include "storage/rows.hpp"
#include "storage/sql.hpp"

namespace hookd::storage {
namespace {

constexpr const char* bootstrap_workspace_id = "default";

std::optional<sys_time> opt_time(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return from_unix_millis(f.as<std::int64_t>());
}

const std::string connection_columns =
    "id, workspace_id, integration_type, integration_name, categories::text, "
    "permissions::text, auth_sealed, environment, external_xref, is_paused, " +
    millis_of("created_at") + ", " + millis_of("updated_at") + ", " + millis_of("last_healthy_at") + ", " +
    millis_of("last_unhealthy_at") + ", last_unhealthy_code";

}  // namespace

const std::string webhook_columns =
    "id, workspace_id, connection_id, hook_url, object_type, interval_minutes, " +
    millis_of("checked_at") +
    ", integration_type, environment, event, fields, webhook_type, is_healthy, "
    "page_max_limit, filters::text, db_type, db_url_sealed, db_schema, db_name_prefix, "
    "is_paused, is_beta, " +
    millis_of("created_at") + ", " + millis_of("updated_at") +
    // The latest ten runs, from the history (through webhook_runs_webhook).
    ", (select coalesce(jsonb_agg(s.summary order by s.started_at desc, s.id desc), '[]'::jsonb)::text "
    "from (select summary, started_at, id from webhook_runs r where r.webhook_id = webhooks.id "
    "and r.summary <> '' order by r.started_at desc, r.id desc limit 10) s)";

namespace {

std::string unseal(const crypto::cipher& cipher, const std::string& sealed) {
  if (sealed.empty()) return {};
  auto plain = cipher.open(sealed);
  // A secret sealed under another key cannot be read: the operator changed the key.
  if (!plain) throw std::runtime_error("a stored secret cannot be decrypted with the configured encryption_key");
  return *plain;
}

connection connection_from_row(const pqxx::row& r, const crypto::cipher& cipher) {
  connection c;
  c.id = r[0].as<std::string>();
  c.workspace_id = r[1].as<std::string>();
  c.integration_type = r[2].as<std::string>();
  c.integration_name = r[3].as<std::string>();
  c.categories = json::parse_string_array(r[4].as<std::string>());
  c.permissions = json::parse_string_array(r[5].as<std::string>());
  c.auth_json = unseal(cipher, r[6].as<std::string>());
  if (c.auth_json.empty()) c.auth_json = "{}";
  c.environment = r[7].as<std::string>();
  c.external_xref = r[8].as<std::string>();
  c.is_paused = r[9].as<bool>();
  c.created_at = from_unix_millis(r[10].as<std::int64_t>());
  c.updated_at = from_unix_millis(r[11].as<std::int64_t>());
  c.last_healthy_at = opt_time(r[12]);
  c.last_unhealthy_at = opt_time(r[13]);
  c.last_unhealthy_code = r[14].as<std::string>();
  return c;
}

}  // namespace

webhook webhook_from_row(const pqxx::row& r, const crypto::cipher& cipher) {
  webhook h;
  h.id = r[0].as<std::string>();
  h.workspace_id = r[1].as<std::string>();
  h.connection_id = r[2].as<std::string>();
  h.hook_url = r[3].as<std::string>();
  h.object_type = r[4].as<std::string>();
  h.interval = r[5].as<double>();
  h.checked_at = opt_time(r[6]);
  h.integration_type = r[7].as<std::string>();
  h.environment = r[8].as<std::string>();
  h.event = r[9].as<std::string>();
  h.fields = r[10].as<std::string>();
  h.webhook_type = r[11].as<std::string>();
  h.is_healthy = r[12].as<bool>();
  h.page_max_limit = r[13].as<int>();
  h.filters = json::parse_string_map(r[14].as<std::string>());
  h.db_type = r[15].as<std::string>();
  h.db_url = unseal(cipher, r[16].as<std::string>());
  h.db_schema = r[17].as<std::string>();
  h.db_name_prefix = r[18].as<std::string>();
  h.is_paused = r[19].as<bool>();
  h.is_beta = r[20].as<bool>();
  h.created_at = from_unix_millis(r[21].as<std::int64_t>());
  h.updated_at = from_unix_millis(r[22].as<std::int64_t>());
  h.runs = json::parse_string_array(r[23].as<std::string>());
  return h;
}

namespace {

// WHERE and ORDER BY for the list endpoints; values are quoted by libpq.
std::string list_conditions(pqxx::transaction_base& tx, const list_query& q) {
  std::string where;
  if (q.updated_gte) where += " and updated_at >= " + timestamp_sql(tx, *q.updated_gte);
  if (q.created_lte) where += " and created_at <= " + timestamp_sql(tx, *q.created_lte);
  if (!q.env.empty()) where += " and environment = " + tx.quote(q.env);
  return where;
}

std::string order_and_page(const list_query& q, std::string_view name_column) {
  std::string column = q.sort == "name" ? std::string(name_column) : q.sort;
  const char* dir = q.descending ? "desc" : "asc";
  return fmt::format(" order by {} {}, id {} limit {} offset {}", column, dir, dir, q.limit,
                     q.offset);
}

std::string sealed_or_empty(const crypto::cipher& cipher, const std::string& plain) {
  return plain.empty() ? std::string{} : cipher.seal(plain);
}

}  // namespace

store::store(executor& db, crypto::cipher cipher, const clock& clk)
    : db_(db), cipher_(std::move(cipher)), clock_(clk) {}

workspace store::create_workspace(const std::string& name, const std::string& api_key,
                                  const std::string& secret) {
  workspace ws{crypto::random_id(), name, secret, ""};
  auto sealed = cipher_.seal(secret);
  db_.run_sync([&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec0("insert into workspaces(id, name, secret_sealed) values (" + tx.quote(ws.id) + ", " +
             tx.quote(name) + ", " + tx.quote(sealed) + ")");
    tx.exec0("insert into api_keys(key_hash, workspace_id) values (" +
             tx.quote(crypto::sha256_hex(api_key)) + ", " + tx.quote(ws.id) + ")");
    tx.commit();
  });
  return ws;
}

store::bootstrap_result store::bootstrap_workspace(const std::string& api_key,
                                                   const std::string& secret,
                                                   const std::string& notification_url) {
  bootstrap_result out;
  std::string key = api_key;
  std::string sec = secret;
  bool exists = db_.run_sync([&](pqxx::connection& c) {
    pqxx::work tx(c);
    return !tx.exec("select 1 from workspaces where id = " + tx.quote(bootstrap_workspace_id))
                .empty();
  });
  if (!exists) {
    if (key.empty()) out.generated_api_key = key = "hookd_" + crypto::random_token(24);
    if (sec.empty()) out.generated_secret = sec = "whsec_" + crypto::base64_encode(crypto::random_bytes(24));
  }
  auto sealed = sec.empty() ? std::string{} : cipher_.seal(sec);
  auto stored_secret = db_.run_sync([&](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec0("insert into workspaces(id, name, secret_sealed) values (" +
             tx.quote(bootstrap_workspace_id) + ", 'default', " + tx.quote(sealed) +
             ") on conflict (id) do nothing");
    if (!sealed.empty())
      tx.exec0("update workspaces set secret_sealed = " + tx.quote(sealed) +
               " where id = " + tx.quote(bootstrap_workspace_id));
    if (!key.empty()) {
      // The configured key replaces the previous configured key: changing HOOKD_API_KEY
      // revokes the old one. Keys made by `hookd workspace create` are not touched.
      auto hash = tx.quote(crypto::sha256_hex(key));
      const char* configured = out.generated_api_key ? "false" : "true";
      if (!out.generated_api_key)
        tx.exec0("delete from api_keys where is_bootstrap and key_hash <> " + hash);
      tx.exec0("insert into api_keys(key_hash, workspace_id, is_bootstrap) values (" + hash +
               ", " + tx.quote(bootstrap_workspace_id) + ", " + configured +
               ") on conflict (key_hash) do nothing");
    }
    if (!notification_url.empty())
      tx.exec0("update workspaces set notification_url = " + tx.quote(notification_url) +
               " where id = " + tx.quote(bootstrap_workspace_id));
    auto r = tx.exec1("select secret_sealed from workspaces where id = " +
                      tx.quote(bootstrap_workspace_id));
    tx.commit();
    return r[0].as<std::string>();
  });
  out.ws = {bootstrap_workspace_id, "default", unseal(cipher_, stored_secret), notification_url};
  return out;
}

awaitable<std::optional<workspace>> store::find_workspace_by_key(std::string api_key) {
  auto hash = crypto::sha256_hex(api_key);
  auto job = [hash](pqxx::connection& c) -> std::optional<std::array<std::string, 4>> {
    pqxx::read_transaction tx(c);
    auto r = tx.exec(
        "select w.id, w.name, w.secret_sealed, w.notification_url from api_keys k "
        "join workspaces w on w.id = k.workspace_id where k.key_hash = " + tx.quote(hash));
    if (r.empty()) return std::nullopt;
    return std::array<std::string, 4>{r[0][0].as<std::string>(), r[0][1].as<std::string>(),
                                      r[0][2].as<std::string>(), r[0][3].as<std::string>()};
  };
  auto row = co_await db_.run(std::move(job));
  if (!row) co_return std::nullopt;
  co_return workspace{(*row)[0], (*row)[1], unseal(cipher_, (*row)[2]), (*row)[3]};
}

awaitable<workspace> store::workspace_by_id(std::string workspace_id) {
  auto job = [workspace_id](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    auto r = tx.exec1("select id, name, secret_sealed, notification_url from workspaces where id = " +
                      tx.quote(workspace_id));
    return std::array<std::string, 4>{r[0].as<std::string>(), r[1].as<std::string>(),
                                      r[2].as<std::string>(), r[3].as<std::string>()};
  };
  auto row = co_await db_.run(std::move(job));
  co_return workspace{row[0], row[1], unseal(cipher_, row[2]), row[3]};
}

awaitable<void> store::set_notification_url(std::string workspace_id, std::string url) {
  auto job = [workspace_id, url](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec0("update workspaces set notification_url = " + tx.quote(url) + " where id = " +
             tx.quote(workspace_id));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<std::optional<webhook>> store::get_webhook_by_id(std::string id) {
  auto job = [&, id](pqxx::connection& conn) -> std::optional<webhook> {
    pqxx::read_transaction tx(conn);
    auto r = tx.exec("select " + webhook_columns + " from webhooks where id = " + tx.quote(id));
    if (r.empty()) return std::nullopt;
    return webhook_from_row(r[0], cipher_);
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<connection> store::create_connection(connection c) {
  c.id = crypto::random_id();
  c.created_at = c.updated_at = clock_.now();
  auto sealed = cipher_.seal(c.auth_json);
  auto job = [c, sealed](pqxx::connection& conn) {
    pqxx::work tx(conn);
    tx.exec0(
        "insert into connections(id, workspace_id, integration_type, integration_name, "
        "categories, permissions, auth_sealed, environment, external_xref, is_paused, "
        "created_at, updated_at) values (" +
        tx.quote(c.id) + ", " + tx.quote(c.workspace_id) + ", " + tx.quote(c.integration_type) +
        ", " + tx.quote(c.integration_name) + ", " + tx.quote(json::string_array(c.categories)) +
        "::jsonb, " + tx.quote(json::string_array(c.permissions)) + "::jsonb, " + tx.quote(sealed) +
        ", " + tx.quote(c.environment) + ", " + tx.quote(c.external_xref) + ", " +
        (c.is_paused ? "true" : "false") + ", " + timestamp_sql(tx, c.created_at) + ", " +
        timestamp_sql(tx, c.updated_at) + ")");
    tx.commit();
  };
  co_await db_.run(std::move(job));
  co_return c;
}

awaitable<std::optional<connection>> store::get_connection(std::string workspace_id,
                                                           std::string id) {
  auto job = [&, workspace_id, id](pqxx::connection& conn) -> std::optional<connection> {
    pqxx::read_transaction tx(conn);
    auto r = tx.exec("select " + connection_columns + " from connections where workspace_id = " +
                     tx.quote(workspace_id) + " and id = " + tx.quote(id));
    if (r.empty()) return std::nullopt;
    return connection_from_row(r[0], cipher_);
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::vector<connection>> store::list_connections(std::string workspace_id,
                                                           list_query q) {
  auto job = [&, workspace_id, q](pqxx::connection& conn) {
    pqxx::read_transaction tx(conn);
    std::string sql = "select " + connection_columns +
                      " from connections where workspace_id = " + tx.quote(workspace_id) +
                      list_conditions(tx, q);
    if (!q.external_xref.empty()) sql += " and external_xref = " + tx.quote(q.external_xref);
    for (const auto& cat : q.categories)
      sql += " and categories ? " + tx.quote(cat);
    sql += order_and_page(q, "integration_name");
    std::vector<connection> out;
    for (const auto& row : tx.exec(sql)) out.push_back(connection_from_row(row, cipher_));
    return out;
  };
  co_return co_await db_.run(std::move(job));
}

namespace {

// Auth members that are credentials (rotated by hookd or the user) rather than the account the
// connection reads.
bool is_credential_key(std::string_view k) {
  static constexpr std::string_view keys[] = {
      "token", "access_token", "refresh_token", "expiry_date", "expires_at", "expires_in", "key",
      "api_key", "password", "client_id", "client_secret", "token_url", "webhook_secret"};
  return std::find(std::begin(keys), std::end(keys), k) != std::end(keys);
}

// Which source a connection reads: its integration and every auth member that is not a
// credential (api_url, meta, subdomain, ...), as canonical text.
std::string source_identity(const std::string& integration_type, std::string_view auth_json) {
  std::map<std::string, std::string> members;
  json::document doc;
  if (!json::document::parse(auth_json, doc) && doc.root().is_object()) {
    simdjson::dom::object o = doc.root().get_object().value_unsafe();
    for (auto [k, v] : o)
      if (!is_credential_key(k)) members[std::string(k)] = json::to_string(v);
  }
  std::string out = integration_type;
  for (const auto& [k, v] : members) out += "\n" + k + "=" + v;
  return out;
}

// Another source behind the connection: its feeds start again from a fresh, silent baseline
// (their snapshots are of the old source, and diffing the new one against them would report
// every record as deleted or created), and their webhooks skip what the old source logged.
// The change log and its sequence go on, so cursors stay monotonic; a poll of the old source
// still in flight loses its poll lease and its writes are fenced off.
void start_feeds_afresh(pqxx::work& tx, const std::string& connection_id) {
  auto id = tx.quote(connection_id);
  tx.exec("select id from feeds where connection_id = " + id + " order by id for update");
  tx.exec("select id from webhooks where connection_id = " + id + " order by id for update");
  tx.exec0("delete from feed_records where feed_id in (select id from feeds where connection_id = " + id + ")");
  tx.exec0("update feeds set baseline_done = false, record_count = 0, polls = 0, high_water = null, "
           "pending_deletes = '[]', poll_owner = null, poll_expires_at = null, last_polled_at = null, "
           "last_poll_started_at = null, last_complete_at = null, last_full_scan_at = null, last_error = '' "
           "where connection_id = " + id);
  tx.exec0("delete from deliveries where webhook_id in (select id from webhooks where connection_id = " + id + ")");
  tx.exec0("update webhooks w set cursor_seq = f.head_seq, initial_sync_done = not w.include_all, "
           "initial_after = '', initial_pages = '[]' from feeds f where f.id = w.feed_id and w.connection_id = " + id);
}

}  // namespace

awaitable<std::optional<connection>> store::update_connection(connection c) {
  c.updated_at = clock_.now();
  auto sealed = cipher_.seal(c.auth_json);
  auto job = [this, c, sealed](pqxx::connection& conn) {
    pqxx::work tx(conn);
    auto before = tx.exec("select integration_type, auth_sealed from connections where workspace_id = " +
                          tx.quote(c.workspace_id) + " and id = " + tx.quote(c.id));
    if (before.empty()) return false;
    auto old_auth = cipher_.open(before[0][1].as<std::string>()).value_or("");
    if (source_identity(before[0][0].as<std::string>(), old_auth) != source_identity(c.integration_type, c.auth_json))
      start_feeds_afresh(tx, c.id);
    auto r = tx.exec(
        "update connections set integration_type = " + tx.quote(c.integration_type) +
        ", integration_name = " + tx.quote(c.integration_name) +
        ", categories = " + tx.quote(json::string_array(c.categories)) +
        "::jsonb, permissions = " + tx.quote(json::string_array(c.permissions)) +
        "::jsonb, auth_sealed = " + tx.quote(sealed) + ", environment = " +
        tx.quote(c.environment) + ", external_xref = " + tx.quote(c.external_xref) +
        ", is_paused = " + (c.is_paused ? "true" : "false") +
        ", updated_at = " + timestamp_sql(tx, c.updated_at) + " where workspace_id = " +
        tx.quote(c.workspace_id) + " and id = " + tx.quote(c.id) + " returning id");
    // The webhooks of this connection report its integration type.
    tx.exec0("update webhooks set integration_type = " + tx.quote(c.integration_type) +
             " where connection_id = " + tx.quote(c.id));
    tx.commit();
    return !r.empty();
  };
  bool found = co_await db_.run(std::move(job));
  if (!found) co_return std::nullopt;
  co_return c;
}

awaitable<bool> store::delete_connection(std::string workspace_id, std::string id) {
  auto job = [workspace_id, id](pqxx::connection& conn) {
    pqxx::work tx(conn);
    // Its feeds, then its webhooks, locked in id order before the cascade deletes them: the
    // order in which the scheduler's batches lock them (else the two can deadlock).
    tx.exec("select f.id from feeds f join connections c on c.id = f.connection_id where c.workspace_id = " +
            tx.quote(workspace_id) + " and c.id = " + tx.quote(id) + " order by f.id for update of f");
    tx.exec("select w.id from webhooks w join connections c on c.id = w.connection_id where c.workspace_id = " +
            tx.quote(workspace_id) + " and c.id = " + tx.quote(id) + " order by w.id for update of w");
    // webhooks go with it (on delete cascade); their delivery lanes stop before their next POST
    tx.exec("select pg_notify('hookd_wakeup', 'changed:' || w.id) from webhooks w join connections c "
            "on c.id = w.connection_id where c.workspace_id = " + tx.quote(workspace_id) +
            " and c.id = " + tx.quote(id));
    auto r = tx.exec("delete from connections where workspace_id = " + tx.quote(workspace_id) +
                     " and id = " + tx.quote(id) + " returning id");
    tx.commit();
    return !r.empty();
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::optional<connection>> store::get_connection_by_id(std::string id) {
  auto job = [&, id](pqxx::connection& conn) -> std::optional<connection> {
    pqxx::read_transaction tx(conn);
    auto r = tx.exec("select " + connection_columns + " from connections where id = " + tx.quote(id));
    if (r.empty()) return std::nullopt;
    return connection_from_row(r[0], cipher_);
  };
  co_return co_await db_.run(std::move(job));
}

std::vector<std::optional<connection>> store::connections_by_id_batch(
    pqxx::connection& conn, const std::vector<std::string>& ids) const {
  pqxx::read_transaction tx(conn);
  auto r = tx.exec("select " + connection_columns + " from connections where id = any(" +
                   tx.quote(text_array_literal(ids)) + "::text[])");
  std::unordered_map<std::string, connection> found;
  for (const auto& row : r) {
    auto c = connection_from_row(row, cipher_);
    auto id = c.id;
    found.emplace(std::move(id), std::move(c));
  }
  std::vector<std::optional<connection>> out;
  out.reserve(ids.size());
  for (const auto& id : ids) {
    auto it = found.find(id);
    out.push_back(it == found.end() ? std::nullopt : std::optional<connection>(it->second));
  }
  return out;
}

std::vector<bool> store::mark_healthy_batch(pqxx::connection& conn, const std::vector<std::string>& ids) const {
  pqxx::work tx(conn);
  // In id order: two instances marking overlapping sets never deadlock.
  tx.exec0("update connections set last_healthy_at = " + timestamp_sql(tx, clock_.now()) +
           " where id in (select id from connections where id = any(" + tx.quote(text_array_literal(ids)) +
           "::text[]) order by id for no key update)");
  tx.commit();
  return std::vector<bool>(ids.size(), true);
}

awaitable<void> store::mark_connection_healthy(std::string id) {
  auto now = clock_.now();
  auto job = [id, now](pqxx::connection& conn) {
    pqxx::work tx(conn);
    tx.exec0("update connections set last_healthy_at = " + timestamp_sql(tx, now) +
             " where id = " + tx.quote(id));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<void> store::mark_connection_unhealthy(std::string id, unsigned status) {
  auto now = clock_.now();
  auto job = [id, now, status](pqxx::connection& conn) {
    pqxx::work tx(conn);
    tx.exec0("update connections set last_unhealthy_at = " + timestamp_sql(tx, now) +
             ", last_unhealthy_code = " + tx.quote(std::to_string(status)) +
             " where id = " + tx.quote(id));
    tx.commit();
  };
  co_await db_.run(std::move(job));
}

awaitable<bool> store::save_connection_auth(std::string id, std::string based_on, std::string auth_json) {
  auto sealed = cipher_.seal(auth_json);
  auto job = [this, id, based_on, sealed](pqxx::connection& conn) {
    pqxx::work tx(conn);
    auto r = tx.exec("select auth_sealed from connections where id = " + tx.quote(id) + " for update");
    // Only over the auth it was made from: a PATCH since then holds newer credentials.
    if (r.empty() || cipher_.open(r[0][0].as<std::string>()) != based_on) return false;
    tx.exec0("update connections set auth_sealed = " + tx.quote(sealed) + " where id = " + tx.quote(id));
    tx.commit();
    return true;
  };
  co_return co_await db_.run(std::move(job));
}

namespace {
std::string webhook_values_sql(pqxx::transaction_base& tx, const webhook& h,
                               const std::string& db_url_sealed) {
  return fmt::format(
      "hook_url = {}, object_type = {}, interval_minutes = {}, event = {}, fields = {}, "
      "webhook_type = {}, page_max_limit = {}, filters = {}::jsonb, db_type = {}, "
      "db_url_sealed = {}, db_schema = {}, db_name_prefix = {}, is_paused = {}, is_beta = {}",
      tx.quote(h.hook_url), tx.quote(h.object_type), tx.quote(json::format_number(h.interval)),
      tx.quote(h.event), tx.quote(h.fields), tx.quote(h.webhook_type), h.page_max_limit,
      tx.quote(json::string_map(h.filters)), tx.quote(h.db_type), tx.quote(db_url_sealed),
      tx.quote(h.db_schema), tx.quote(h.db_name_prefix), h.is_paused ? "true" : "false",
      h.is_beta ? "true" : "false");
}
}  // namespace

namespace {

// Spreads the first runs of webhooks created together: a delay derived from the feed, so
// that webhooks on one feed stay together (one shared poll) while different feeds spread.
std::chrono::milliseconds first_run_jitter(const webhook& h, const std::string& feed_key) {
  std::uint64_t x = 1469598103934665603ULL;  // FNV-1a
  for (char c : h.connection_id + "/" + h.object_type + "/" + feed_key) {
    x ^= static_cast<unsigned char>(c);
    x *= 1099511628211ULL;
  }
  auto window = std::min<std::int64_t>(static_cast<std::int64_t>(h.interval * 60'000), 30'000);
  return std::chrono::milliseconds(window > 0 ? static_cast<std::int64_t>(x % static_cast<std::uint64_t>(window)) : 0);
}

std::map<std::string, std::string> client_side(const webhook& h,
                                               const std::map<std::string, std::string>& pushed) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : h.filters)
    if (!pushed.contains(k)) out.emplace(k, v);
  return out;
}

}  // namespace

awaitable<std::optional<webhook>> store::create_webhook(webhook h, bool include_all,
                                                        std::map<std::string, std::string> pushed) {
  h.id = crypto::random_id();
  h.created_at = h.updated_at = clock_.now();
  auto first_run = h.created_at + first_run_jitter(h, filter_key(pushed));
  auto sealed = sealed_or_empty(cipher_, h.db_url);
  auto job = [&, h, sealed, include_all, pushed, first_run](pqxx::connection& conn) -> std::optional<webhook> {
    pqxx::work tx(conn);
    // The connection row is locked so a concurrent delete cannot orphan the webhook.
    auto owner = tx.exec("select integration_type from connections where workspace_id = " +
                         tx.quote(h.workspace_id) + " and id = " + tx.quote(h.connection_id) +
                         " for share");
    if (owner.empty()) return std::nullopt;
    tx.exec0(
        "insert into webhooks(id, workspace_id, connection_id, object_type, interval_minutes, "
        "integration_type, event, include_all, initial_sync_done, next_run_at, next_slot_at, "
        "created_at, updated_at) values (" +
        tx.quote(h.id) + ", " + tx.quote(h.workspace_id) + ", " + tx.quote(h.connection_id) +
        ", " + tx.quote(h.object_type) + ", " + tx.quote(json::format_number(h.interval)) + ", " +
        tx.quote(owner[0][0].as<std::string>()) + ", " + tx.quote(h.event) + ", " +
        (include_all ? "true, false" : "false, true") + ", " + timestamp_sql(tx, first_run) + ", " +
        timestamp_sql(tx, first_run) + ", " +
        timestamp_sql(tx, h.created_at) + ", " + timestamp_sql(tx, h.updated_at) + ")");
    auto feed = assign_feed(tx, h.id, h.connection_id, h.object_type, pushed);
    // On the slot of the feed's other webhooks of the same interval, if any: then one poll
    // serves them all at every slot (webhooks created a moment apart would otherwise each
    // come due on their own).
    tx.exec0(fmt::format(
        "update webhooks set next_run_at = s.slot, next_slot_at = s.slot from (select min(next_slot_at) as slot "
        "from webhooks where feed_id = {} and id <> {} and interval_minutes = {} and not is_paused "
        "and next_slot_at >= {}) s where id = {} and s.slot is not null",
        feed, tx.quote(h.id), tx.quote(json::format_number(h.interval)), timestamp_sql(tx, h.created_at),
        tx.quote(h.id)));
    auto row = tx.exec1("update webhooks set " + webhook_values_sql(tx, h, sealed) +
                        ", client_filters = " + tx.quote(json::string_map(client_side(h, pushed))) +
                        // include_all: the delivery engine starts the initial sync (once the
                        // feed's baseline is complete).
                        "::jsonb" + (include_all ? ", deliver_at = " + timestamp_sql(tx, h.created_at) : std::string()) +
                        " where id = " + tx.quote(h.id) + " returning " + webhook_columns);
    auto out = webhook_from_row(row, cipher_);
    tx.commit();
    return out;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::optional<webhook>> store::get_webhook(std::string workspace_id, std::string id) {
  auto job = [&, workspace_id, id](pqxx::connection& conn) -> std::optional<webhook> {
    pqxx::read_transaction tx(conn);
    auto r = tx.exec("select " + webhook_columns + " from webhooks where workspace_id = " +
                     tx.quote(workspace_id) + " and id = " + tx.quote(id));
    if (r.empty()) return std::nullopt;
    return webhook_from_row(r[0], cipher_);
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::vector<webhook>> store::list_webhooks(std::string workspace_id, list_query q) {
  auto job = [&, workspace_id, q](pqxx::connection& conn) {
    pqxx::read_transaction tx(conn);
    std::string sql = "select " + webhook_columns + " from webhooks where workspace_id = " +
                      tx.quote(workspace_id) + list_conditions(tx, q);
    if (!q.object_type.empty()) sql += " and object_type = " + tx.quote(q.object_type);
    if (!q.integration_type.empty())
      sql += " and integration_type = " + tx.quote(q.integration_type);
    if (!q.connection_id.empty()) sql += " and connection_id = " + tx.quote(q.connection_id);
    if (q.is_healthy) sql += *q.is_healthy ? " and is_healthy" : " and not is_healthy";
    sql += order_and_page(q, "object_type");
    std::vector<webhook> out;
    for (const auto& row : tx.exec(sql)) out.push_back(webhook_from_row(row, cipher_));
    return out;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<std::optional<webhook>> store::update_webhook(webhook h,
                                                        std::map<std::string, std::string> pushed) {
  h.updated_at = clock_.now();
  auto sealed = sealed_or_empty(cipher_, h.db_url);
  auto job = [&, h, sealed, pushed](pqxx::connection& conn) -> std::optional<webhook> {
    pqxx::work tx(conn);
    auto owner = tx.exec("select integration_type from connections where workspace_id = " +
                         tx.quote(h.workspace_id) + " and id = " + tx.quote(h.connection_id) +
                         " for share");
    if (owner.empty()) return std::nullopt;
    auto current = tx.exec(
        "select coalesce(f.connection_id, ''), coalesce(f.object_type, ''), coalesce(f.filter_key, ''), "
        "w.is_paused from webhooks w left join feeds f on f.id = w.feed_id where w.workspace_id = " +
        tx.quote(h.workspace_id) + " and w.id = " + tx.quote(h.id) + " for update of w");
    if (current.empty()) return std::nullopt;
    // Unpausing gives the outstanding delivery a fresh retry schedule, tried at once: the
    // schedule that paused it was exhausted, and one more attempt would pause it again.
    if (current[0][3].as<bool>() && !h.is_paused)
      tx.exec0("update deliveries set attempts = 0, next_attempt_at = " + timestamp_sql(tx, h.updated_at) +
               " where webhook_id = " + tx.quote(h.id));
    tx.exec0("update webhooks set " + webhook_values_sql(tx, h, sealed) +
             ", connection_id = " + tx.quote(h.connection_id) +
             ", integration_type = " + tx.quote(owner[0][0].as<std::string>()) +
             ", client_filters = " + tx.quote(json::string_map(client_side(h, pushed))) +
             "::jsonb, updated_at = " + timestamp_sql(tx, h.updated_at) +
             // The delivery engine looks at it again (unpaused, another hook_url, ...).
             ", deliver_at = coalesce(deliver_at, " + timestamp_sql(tx, h.updated_at) +
             "), deliver_gen = deliver_gen + 1 where id = " + tx.quote(h.id));
    // Another source stream: the webhook moves to that feed, starting at its head.
    if (current[0][0].as<std::string>() != h.connection_id ||
        current[0][1].as<std::string>() != h.object_type ||
        current[0][2].as<std::string>() != filter_key(pushed)) {
      // The outstanding delivery carries the old stream's records and its cursor position:
      // it is cancelled (an acknowledgement in flight then moves no cursor), and an include_all
      // webhook syncs the new stream from the start.
      tx.exec0("delete from deliveries where webhook_id = " + tx.quote(h.id));
      tx.exec0("update webhooks set initial_sync_done = not include_all, initial_after = '', "
               "initial_pages = '[]' where id = " + tx.quote(h.id));
      assign_feed(tx, h.id, h.connection_id, h.object_type, pushed);
    }
    auto out = webhook_from_row(
        tx.exec1("select " + webhook_columns + " from webhooks where id = " + tx.quote(h.id)), cipher_);
    // Every instance's delivery lane for it reads it again before its next POST.
    tx.exec("select pg_notify('hookd_wakeup', " + tx.quote("changed:" + h.id) + ")");
    tx.commit();
    return out;
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<bool> store::delete_webhook(std::string workspace_id, std::string id) {
  auto job = [workspace_id, id](pqxx::connection& conn) {
    pqxx::work tx(conn);
    auto r = tx.exec("delete from webhooks where workspace_id = " + tx.quote(workspace_id) +
                     " and id = " + tx.quote(id) + " returning id");
    if (!r.empty()) tx.exec("select pg_notify('hookd_wakeup', " + tx.quote("changed:" + id) + ")");
    tx.commit();
    return !r.empty();
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<bool> store::trigger_webhook(std::string workspace_id, std::string id) {
  auto now = clock_.now();
  auto job = [workspace_id, id, now](pqxx::connection& conn) {
    pqxx::work tx(conn);
    // A trigger is a poll slot, not only a delivery retry: the run reads the source.
    auto r = tx.exec("update webhooks set next_run_at = " + timestamp_sql(tx, now) +
                     ", next_slot_at = " + timestamp_sql(tx, now) + ", triggered = true" +
                     " where workspace_id = " + tx.quote(workspace_id) +
                     " and id = " + tx.quote(id) + " returning id");
    if (!r.empty()) tx.exec("select pg_notify('hookd_wakeup', " + tx.quote(id) + ")");
    tx.commit();
    return !r.empty();
  };
  co_return co_await db_.run(std::move(job));
}

awaitable<bool> store::ready() {
  auto job = [](pqxx::connection& conn) {
    return applied_migration_version(conn) >= latest_migration_version();
  };
  co_return co_await db_.run(std::move(job));
}

}  // namespace hookd::storage
