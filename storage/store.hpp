#pragma once
// Repositories of workspaces, connections and webhooks. Every method is one transaction on
// the database executor; secrets (connection auth, db_url, workspace secrets) are sealed
// with AES-256-GCM before they reach the database.
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "core/crypto.hpp"
#include "core/model.hpp"
#include "core/query.hpp"
#include "core/time.hpp"
#include "storage/executor.hpp"

namespace hookd::storage {

struct workspace {
  std::string id;
  std::string name;
  std::string secret;  // the signing secret, unsealed
  std::string notification_url;
};

template <class T>
using awaitable = boost::asio::awaitable<T>;

class store {
public:
  store(executor& db, crypto::cipher cipher, const clock& clk);

  executor& db() { return db_; }
  const crypto::cipher& cipher() const { return cipher_; }

  // Workspaces (blocking: used at start-up and by the command line).
  workspace create_workspace(const std::string& name, const std::string& api_key,
                             const std::string& secret);
  // Makes sure the bootstrap workspace exists and accepts api_key (when given; it replaces
  // the previously configured key) and uses secret (when given). Returns the generated key and secret when it created the
  // workspace without being given a key, so the caller can print them once.
  struct bootstrap_result {
    workspace ws;
    std::optional<std::string> generated_api_key;
    std::optional<std::string> generated_secret;
  };
  bootstrap_result bootstrap_workspace(const std::string& api_key, const std::string& secret,
                                       const std::string& notification_url = "");

  awaitable<std::optional<workspace>> find_workspace_by_key(std::string api_key);
  // The workspace with its signing secret (for payload signatures) and notification URL.
  awaitable<workspace> workspace_by_id(std::string workspace_id);
  awaitable<void> set_notification_url(std::string workspace_id, std::string url);
  // Any webhook by id (the scheduler's view; no workspace check).
  awaitable<std::optional<webhook>> get_webhook_by_id(std::string id);

  // Connections
  awaitable<connection> create_connection(connection c);
  awaitable<std::optional<connection>> get_connection(std::string workspace_id, std::string id);
  awaitable<std::vector<connection>> list_connections(std::string workspace_id, list_query q);
  awaitable<std::optional<connection>> update_connection(connection c);
  awaitable<bool> delete_connection(std::string workspace_id, std::string id);
  // For operator tools and the poller, which act on a connection of any workspace.
  awaitable<std::optional<connection>> get_connection_by_id(std::string id);
  // Source health: a successful read, or a 401/403 (last_unhealthy_code).
  awaitable<void> mark_connection_healthy(std::string id);
  // Batch jobs for the scheduler (scheduler/run_batches.hpp): many connections read in one
  // query (nullopt for one that is gone); many marked healthy in one statement.
  std::vector<std::optional<connection>> connections_by_id_batch(pqxx::connection& c,
                                                                 const std::vector<std::string>& ids) const;
  std::vector<bool> mark_healthy_batch(pqxx::connection& c, const std::vector<std::string>& ids) const;
  awaitable<void> mark_connection_unhealthy(std::string id, unsigned status);
  // Replaces the sealed auth (refreshed OAuth2 tokens).
  // Replaces the connection's auth with `auth_json` (refreshed tokens) if it still is
  // `based_on`; false (nothing written) when it changed meanwhile or the connection is gone.
  awaitable<bool> save_connection_auth(std::string id, std::string based_on, std::string auth_json);

  // Webhooks. create/update return nullopt when the connection is not in the workspace.
  // `pushed` are the filters the source applies itself: they select the webhook's feed.
  awaitable<std::optional<webhook>> create_webhook(webhook h, bool include_all,
                                                   std::map<std::string, std::string> pushed = {});
  awaitable<std::optional<webhook>> get_webhook(std::string workspace_id, std::string id);
  awaitable<std::vector<webhook>> list_webhooks(std::string workspace_id, list_query q);
  awaitable<std::optional<webhook>> update_webhook(webhook h,
                                                   std::map<std::string, std::string> pushed = {});
  awaitable<bool> delete_webhook(std::string workspace_id, std::string id);
  // Makes the webhook due now and wakes the schedulers (NOTIFY hookd_wakeup).
  awaitable<bool> trigger_webhook(std::string workspace_id, std::string id);

  // Readiness: the database answers and every migration is applied.
  awaitable<bool> ready();

private:
  executor& db_;
  crypto::cipher cipher_;
  const clock& clock_;
};

}  // namespace hookd::storage
