#include "scheduler/run_batches.hpp"

namespace hookd::scheduler {

namespace {
// Large enough to carry a claim batch's feeds in one job; a job stays well under a second.
constexpr std::size_t max_per_batch = 500;
// The runs of one claim start together: their lease and connection reads wait a moment for one
// another. Finished runs and health marks wait longer: nobody waits on them.
constexpr std::chrono::milliseconds start_linger{2};
constexpr std::chrono::milliseconds finish_linger{20};
}  // namespace

using storage::feed_store;

run_batches::run_batches(boost::asio::io_context& ioc, feed_store& feeds, storage::store& store,
                         std::chrono::seconds lease)
    : leases_(ioc, feeds.db(),
              [&feeds, lease](pqxx::connection& c, const std::vector<feed_store::lease_request>& r) {
                return feeds.lease_feeds_batch(c, r, lease);
              },
              max_per_batch, start_linger),
      connections_(ioc, store.db(),
                   [&store](pqxx::connection& c, const std::vector<std::string>& ids) {
                     return store.connections_by_id_batch(c, ids);
                   },
                   max_per_batch, start_linger),
      finishes_(ioc, feeds.db(),
                [&feeds](pqxx::connection& c, const std::vector<feed_store::finish_request>& r) {
                  return feeds.finish_batch(c, r);
                },
                max_per_batch, finish_linger),
      healthy_(ioc, store.db(),
               [&store](pqxx::connection& c, const std::vector<std::string>& ids) {
                 return store.mark_healthy_batch(c, ids);
               },
               max_per_batch, finish_linger) {}

boost::asio::awaitable<feed_store::lease_result> run_batches::lease_feed(feed_store::lease_request r) {
  auto result = co_await leases_.call(std::move(r));
  co_return result;
}

boost::asio::awaitable<std::optional<connection>> run_batches::connection_by_id(std::string id) {
  auto result = co_await connections_.call(std::move(id));
  co_return result;
}

boost::asio::awaitable<std::string> run_batches::finish(feed_store::finish_request r) {
  auto result = co_await finishes_.call(std::move(r));
  co_return result;
}

void run_batches::mark_healthy(std::string connection_id) {
  healthy_.submit(std::move(connection_id), [](std::exception_ptr e, bool) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::warn("recording connection health failed: {}", ex.what());
    }
  });
}

}  // namespace hookd::scheduler
