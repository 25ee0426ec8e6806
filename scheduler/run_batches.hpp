#pragma once
// Group commit for the scheduler's bookkeeping (DESIGN §2.1): the runs in flight queue their
// feed leases, connection reads, health marks and finished runs here; each kind goes to the
// database as one batch job (one statement or one transaction) for everything that queued
// while the previous one ran. An unchanged run so costs a fraction of a commit, not several.
#include <chrono>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>

#include "scheduler/batcher.hpp"
#include "storage/feed_store.hpp"
#include "storage/store.hpp"

namespace hookd::scheduler {

class run_batches {
public:
  run_batches(boost::asio::io_context& ioc, storage::feed_store& feeds, storage::store& store,
              std::chrono::seconds lease);

  boost::asio::awaitable<storage::feed_store::lease_result> lease_feed(storage::feed_store::lease_request r);
  boost::asio::awaitable<std::optional<connection>> connection_by_id(std::string id);
  // "" when recorded, else why not (see feed_store::finish_batch).
  boost::asio::awaitable<std::string> finish(storage::feed_store::finish_request r);
  // Records that a read of the connection succeeded; does not wait for the write.
  void mark_healthy(std::string connection_id);

private:
  batcher<storage::feed_store::lease_request, storage::feed_store::lease_result> leases_;
  batcher<std::string, std::optional<connection>> connections_;
  batcher<storage::feed_store::finish_request, std::string> finishes_;
  batcher<std::string, bool> healthy_;
};

}  // namespace hookd::scheduler
