#pragma once
// The REST API (Unified.to's webhook API): routing, authentication, validation and the
// JSON shapes of DESIGN §1.1. Storage does the work; this layer decides what is allowed.
#include <boost/asio/awaitable.hpp>

#include "core/api_error.hpp"
#include "core/validation.hpp"
#include "net/address_policy.hpp"
#include "net/http_server.hpp"
#include "sources/integration_registry.hpp"
#include "storage/store.hpp"

namespace hookd {

struct api_options {
  webhook_limits limits;
  double default_interval_minutes = 60;
  net::address_policy destinations;  // the SSRF guard for hook_url and notification URLs
  net::address_policy sources;       // ... for connections' api_url and token_url
};

class api {
public:
  api(storage::store& store, const sources::integration_registry& integrations,
      api_options options);

  boost::asio::awaitable<net::response> handle(net::request req);
  // Called after a trigger made a webhook due (wakes this instance's scheduler at once;
  // other instances hear the NOTIFY).
  void on_trigger(std::function<void()> f) { on_trigger_ = std::move(f); }
  // Called after a webhook was updated or deleted (its delivery lane reads it again).
  void on_webhook_changed(std::function<void(const std::string&)> f) { on_changed_ = std::move(f); }

private:
  struct context;
  boost::asio::awaitable<net::response> route(context& ctx);
  boost::asio::awaitable<net::response> webhooks(context& ctx);
  boost::asio::awaitable<net::response> webhook_item(context& ctx, const std::string& id);
  boost::asio::awaitable<net::response> trigger(context& ctx, const std::string& id);
  boost::asio::awaitable<net::response> connections(context& ctx);
  boost::asio::awaitable<net::response> connection_item(context& ctx, const std::string& id);
  boost::asio::awaitable<net::response> readyz();
  boost::asio::awaitable<net::response> workspace_settings(context& ctx);
  net::response integrations(context& ctx) const;

  boost::asio::awaitable<std::optional<api_error>> check_webhook_target(
      context& ctx, const webhook& h, std::map<std::string, std::string>& pushed);
  std::optional<api_error> resolve_integration(connection& c) const;
  boost::asio::awaitable<std::optional<api_error>> check_destination(const webhook& h);
  boost::asio::awaitable<std::optional<api_error>> check_source(const connection& c);
  boost::asio::awaitable<net::response> save_webhook(context& ctx, webhook h, bool is_new,
                                                     bool include_all);

  storage::store& store_;
  const sources::integration_registry& integrations_;
  api_options options_;
  std::function<void()> on_trigger_;
  std::function<void(const std::string&)> on_changed_;
};

}  // namespace hookd
