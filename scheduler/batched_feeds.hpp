#pragma once
// The feed repository the scheduler's polls use: every poll's page reads (known hashes) and
// page writes (changes to the snapshot and the log) go through group commit, so that a hundred
// feeds polled at once cost a few round trips and commits per round of pages, not two per page.
#include <memory>

#include <boost/asio/io_context.hpp>

#include "changes/feed_repository.hpp"
#include "scheduler/batcher.hpp"
#include "storage/feed_store.hpp"

namespace hookd::scheduler {

class batched_feeds final : public changes::feed_repository {
public:
  batched_feeds(boost::asio::io_context& ioc, storage::feed_store& feeds, storage::executor& db);

  boost::asio::awaitable<std::unordered_map<std::string, std::string>> known_hashes(
      std::int64_t feed_id, std::vector<std::string> ids) override;
  boost::asio::awaitable<void> apply_changes(std::int64_t feed_id, std::vector<changes::change> changes,
                                             bool baseline) override;
  boost::asio::awaitable<std::vector<std::string>> snapshot_ids(std::int64_t feed_id) override;
  boost::asio::awaitable<void> finish_poll(std::int64_t feed_id, changes::poll_outcome outcome) override;

  // apply_changes for a poll holding the feed's lease as `poll_owner`: written only while it
  // still holds it (see feed_store::apply_request).
  boost::asio::awaitable<void> apply_fenced(std::int64_t feed_id, std::vector<changes::change> changes,
                                            bool baseline, std::string poll_owner);

private:
  storage::feed_store& feeds_;
  batcher<storage::feed_store::known_request, std::unordered_map<std::string, std::string>> reads_;
  batcher<storage::feed_store::apply_request, std::string> writes_;
};

}  // namespace hookd::scheduler
