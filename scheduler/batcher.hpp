#pragma once
// Group commit for the delivery engine and the scheduler: requests from many lanes or runs
// queue up while one batch job runs on a database thread; when it finishes, everything that
// queued meanwhile goes into the next job. Under load a job serves many requests (one
// transaction, one commit); when idle a request runs at once. Cost grows with batches, not
// with requests.
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>

#include "storage/executor.hpp"

namespace hookd::scheduler {

template <class Request, class Result>
class batcher {
public:
  // Runs on a database thread; returns one result per request, in order.
  using job_fn = std::function<std::vector<Result>(pqxx::connection&, const std::vector<Request>&)>;
  // Called on the batcher's strand once the request's batch is done (or failed).
  using done_fn = std::function<void(std::exception_ptr, Result)>;

  // `linger`: how long a request that finds the batcher idle waits for others to join it
  // (0: it runs at once). For writes whose latency nobody waits on, it makes batches larger
  // when the load alone would not.
  batcher(boost::asio::io_context& ioc, storage::executor& db, job_fn job, std::size_t max_batch,
          std::chrono::milliseconds linger = std::chrono::milliseconds(0))
      : strand_(boost::asio::make_strand(ioc)), linger_timer_(strand_), db_(db), job_(std::move(job)),
        max_batch_(max_batch), linger_(linger) {}

  // Queues a request; `done` is called when its batch has run. Thread-safe.
  void submit(Request req, done_fn done) {
    boost::asio::post(strand_, [this, req = std::move(req), done = std::move(done)]() mutable {
      queue_.push_back({std::move(req), std::move(done)});
      flush();
    });
  }

  // Queues a request and waits for its result (resumes on the caller's executor).
  boost::asio::awaitable<Result> call(Request req) {
    auto initiation = [this, req = std::move(req)](auto handler) mutable {
      auto ex = boost::asio::get_associated_executor(handler);
      auto h = std::make_shared<decltype(handler)>(std::move(handler));
      submit(std::move(req), [ex, h](std::exception_ptr e, Result r) {
        boost::asio::post(ex, [h, e, r = std::move(r)]() mutable { std::move(*h)(e, std::move(r)); });
      });
    };
    co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable),
                                                   void(std::exception_ptr, Result)>(
        std::move(initiation), boost::asio::use_awaitable);
  }

private:
  struct item {
    Request req;
    done_fn done;
  };

  void flush() {  // on the strand
    if (running_ || lingering_ || queue_.empty()) return;
    if (linger_.count() > 0 && queue_.size() < max_batch_) {
      lingering_ = true;
      linger_timer_.expires_after(linger_);
      linger_timer_.async_wait([this](const boost::system::error_code&) {
        lingering_ = false;
        run_next();
      });
      return;
    }
    run_next();
  }

  void run_next() {  // on the strand
    if (running_ || queue_.empty()) return;
    running_ = true;
    std::vector<item> batch;
    auto n = std::min(queue_.size(), max_batch_);
    batch.reserve(n);
    for (std::size_t i = 0; i < n; ++i) batch.push_back(std::move(queue_[i]));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    boost::asio::co_spawn(strand_, run_batch(std::move(batch)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("a database batch failed: {}", ex.what());
      }
    });
  }

  boost::asio::awaitable<void> run_batch(std::vector<item> batch) {
    std::vector<Request> requests;
    requests.reserve(batch.size());
    for (auto& i : batch) requests.push_back(i.req);
    std::exception_ptr error;
    std::vector<Result> results;
    // A local, not a temporary inside co_await: g++ 12 may destroy such lambdas twice.
    auto job = [this, requests = std::move(requests)](pqxx::connection& c) { return job_(c, requests); };
    try {
      results = co_await db_.run(std::move(job));
      if (results.size() != batch.size()) throw std::logic_error("a batch job returned the wrong count");
    } catch (...) {
      error = std::current_exception();
    }
    for (std::size_t i = 0; i < batch.size(); ++i)
      batch[i].done(error, error ? Result{} : std::move(results[i]));
    running_ = false;
    run_next();  // what queued meanwhile goes at once: it has waited for this batch already
  }

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::steady_timer linger_timer_;
  storage::executor& db_;
  job_fn job_;
  std::size_t max_batch_;
  std::chrono::milliseconds linger_;
  std::vector<item> queue_;
  bool running_ = false;
  bool lingering_ = false;
};

}  // namespace hookd::scheduler
