#pragma once
// Records what the poller learns about connections (health, refreshed tokens) in storage.
#include "scheduler/run_batches.hpp"
#include "sources/poller.hpp"
#include "storage/store.hpp"

namespace hookd {

class connection_health final : public sources::connection_events {
public:
  // With `batches`, successful reads (one per poll) are recorded in batches.
  explicit connection_health(storage::store& store, scheduler::run_batches* batches = nullptr)
      : store_(store), batches_(batches) {}

  boost::asio::awaitable<void> unhealthy(std::string connection_id, unsigned status) override {
    co_await store_.mark_connection_unhealthy(std::move(connection_id), status);
  }
  boost::asio::awaitable<void> healthy(std::string connection_id) override {
    if (batches_)
      batches_->mark_healthy(std::move(connection_id));
    else
      co_await store_.mark_connection_healthy(std::move(connection_id));
  }
  boost::asio::awaitable<bool> auth_refreshed(std::string connection_id, std::string based_on,
                                              std::string auth_json) override {
    co_return co_await store_.save_connection_auth(std::move(connection_id), std::move(based_on),
                                                   std::move(auth_json));
  }

private:
  storage::store& store_;
  scheduler::run_batches* batches_;
};

}  // namespace hookd
