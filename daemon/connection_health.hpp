#pragma once
// Records what the poller learns about connections (health, refreshed tokens) in storage.
#include "sources/poller.hpp"
#include "storage/store.hpp"

namespace hookd {

class connection_health final : public sources::connection_events {
public:
  explicit connection_health(storage::store& store) : store_(store) {}

  boost::asio::awaitable<void> unhealthy(std::string connection_id, unsigned status) override {
    co_await store_.mark_connection_unhealthy(std::move(connection_id), status);
  }
  boost::asio::awaitable<void> healthy(std::string connection_id) override {
    co_await store_.mark_connection_healthy(std::move(connection_id));
  }
  boost::asio::awaitable<void> auth_refreshed(std::string connection_id,
                                              std::string auth_json) override {
    co_await store_.save_connection_auth(std::move(connection_id), std::move(auth_json));
  }

private:
  storage::store& store_;
};

}  // namespace hookd
