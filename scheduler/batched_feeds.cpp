#include "scheduler/batched_feeds.hpp"

#include <stdexcept>

namespace hookd::scheduler {

namespace {
constexpr std::size_t max_pages_per_batch = 64;
}

batched_feeds::batched_feeds(boost::asio::io_context& ioc, storage::feed_store& feeds,
                             storage::executor& db)
    : feeds_(feeds),
      reads_(ioc, db,
             [this](pqxx::connection& c, const std::vector<storage::feed_store::known_request>& r) {
               return feeds_.known_hashes_batch(c, r);
             },
             max_pages_per_batch),
      writes_(ioc, db,
              [this](pqxx::connection& c, const std::vector<storage::feed_store::apply_request>& r) {
                return feeds_.apply_changes_batch(c, r);
              },
              max_pages_per_batch) {}

boost::asio::awaitable<std::unordered_map<std::string, std::string>> batched_feeds::known_hashes(
    std::int64_t feed_id, std::vector<std::string> ids) {
  // Locals, not temporaries inside co_await: g++ 12 may destroy those twice.
  storage::feed_store::known_request request{feed_id, std::move(ids)};
  auto known = co_await reads_.call(std::move(request));
  co_return known;
}

boost::asio::awaitable<void> batched_feeds::apply_changes(std::int64_t feed_id,
                                                          std::vector<changes::change> changes,
                                                          bool baseline) {
  co_await apply_fenced(feed_id, std::move(changes), baseline, "");
}

boost::asio::awaitable<void> batched_feeds::apply_fenced(std::int64_t feed_id,
                                                         std::vector<changes::change> changes,
                                                         bool baseline, std::string poll_owner) {
  if (changes.empty()) co_return;
  storage::feed_store::apply_request request{feed_id, std::move(changes), baseline, std::move(poll_owner)};
  auto error = co_await writes_.call(std::move(request));
  // The poll ends as incomplete (nothing is concluded from a page that was not written).
  if (!error.empty()) throw std::runtime_error("writing the changes failed: " + error);
}

boost::asio::awaitable<std::vector<std::string>> batched_feeds::snapshot_ids(std::int64_t feed_id) {
  co_return co_await feeds_.snapshot_ids(feed_id);
}

boost::asio::awaitable<void> batched_feeds::finish_poll(std::int64_t feed_id, changes::poll_outcome outcome) {
  co_await feeds_.finish_poll(feed_id, std::move(outcome));
}

}  // namespace hookd::scheduler
