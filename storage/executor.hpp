#pragma once
// The database executor: a pool of threads, each owning one libpqxx connection (never
// shared, never moved). Coroutines hand it jobs with `co_await db.run(fn)`; the event loop
// never blocks on the database. A job that finds its connection broken is retried once on
// a fresh connection (jobs are whole transactions, so a retry is safe unless the commit
// itself was in doubt, which surfaces as pqxx::in_doubt_error).
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <pqxx/pqxx>

namespace hookd::storage {

// The database could not be reached (after one reconnect). Maps to 503 at the API.
struct database_unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct executor_options {
  std::string url;
  int pool_size = 4;
  int connect_timeout_seconds = 5;
  int statement_timeout_ms = 30000;
};

// Adds connect_timeout and statement_timeout to a libpq URL or key=value string.
std::string with_timeouts(const std::string& url, int connect_timeout_s, int statement_timeout_ms);

class executor {
public:
  explicit executor(executor_options opts);
  ~executor();
  executor(const executor&) = delete;
  executor& operator=(const executor&) = delete;

  // Runs fn(pqxx::connection&) on a database thread; the result (or exception) comes back
  // on the awaiting coroutine's executor.
  template <class F>
  auto run(F fn) -> boost::asio::awaitable<std::invoke_result_t<F&, pqxx::connection&>> {
    using result_t = std::invoke_result_t<F&, pqxx::connection&>;
    // The initiations are locals: g++ 12 may destroy a lambda with captures that is
    // written inside a co_await expression twice.
    if constexpr (std::is_void_v<result_t>) {
      auto initiation = [this, fn = std::move(fn)](auto handler) mutable {
        enqueue(make_void_job(std::move(fn), std::move(handler)));
      };
      co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable),
                                           void(std::exception_ptr)>(
          std::move(initiation), boost::asio::use_awaitable);
    } else {
      auto initiation = [this, fn = std::move(fn)](auto handler) mutable {
        enqueue(make_value_job(std::move(fn), std::move(handler)));
      };
      co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable),
                                                     void(std::exception_ptr, result_t)>(
          std::move(initiation), boost::asio::use_awaitable);
    }
  }

  // Blocking variant for start-up and command-line tools (not for the event loop).
  template <class F>
  auto run_sync(F fn) -> std::invoke_result_t<F&, pqxx::connection&> {
    using result_t = std::invoke_result_t<F&, pqxx::connection&>;
    auto promise = std::make_shared<std::promise<result_t>>();
    auto future = promise->get_future();
    enqueue(std::make_unique<sync_job<F, result_t>>(std::move(fn), promise));
    return future.get();
  }

  const std::string& url() const { return url_; }

private:
  struct job {
    virtual ~job() = default;
    virtual void run(pqxx::connection& c) = 0;  // may throw; the worker retries once
    virtual void fail(std::exception_ptr e) = 0;
  };

  template <class F, class R>
  struct sync_job final : job {
    sync_job(F f, std::shared_ptr<std::promise<R>> p) : fn(std::move(f)), promise(std::move(p)) {}
    void run(pqxx::connection& c) override {
      if constexpr (std::is_void_v<R>) {
        fn(c);
        promise->set_value();
      } else {
        promise->set_value(fn(c));
      }
    }
    void fail(std::exception_ptr e) override { promise->set_exception(e); }
    F fn;
    std::shared_ptr<std::promise<R>> promise;
  };

  template <class F, class H>
  static std::unique_ptr<job> make_value_job(F fn, H handler) {
    struct value_job final : job {
      value_job(F f, H h)
          : fn(std::move(f)), handler(std::move(h)),
            work(boost::asio::get_associated_executor(handler)) {}
      void run(pqxx::connection& c) override {
        auto r = fn(c);
        auto ex = work.get_executor();
        boost::asio::post(ex, [h = std::move(handler), r = std::move(r)]() mutable {
          std::move(h)(nullptr, std::move(r));
        });
      }
      void fail(std::exception_ptr e) override {
        auto ex = work.get_executor();
        boost::asio::post(ex, [h = std::move(handler), e]() mutable {
          std::move(h)(e, std::invoke_result_t<F&, pqxx::connection&>{});
        });
      }
      F fn;
      H handler;
      boost::asio::executor_work_guard<boost::asio::associated_executor_t<H>> work;
    };
    return std::make_unique<value_job>(std::move(fn), std::move(handler));
  }

  template <class F, class H>
  static std::unique_ptr<job> make_void_job(F fn, H handler) {
    struct void_job final : job {
      void_job(F f, H h)
          : fn(std::move(f)), handler(std::move(h)),
            work(boost::asio::get_associated_executor(handler)) {}
      void run(pqxx::connection& c) override {
        fn(c);
        finish(nullptr);
      }
      void fail(std::exception_ptr e) override { finish(e); }
      void finish(std::exception_ptr e) {
        auto ex = work.get_executor();
        boost::asio::post(ex, [h = std::move(handler), e]() mutable { std::move(h)(e); });
      }
      F fn;
      H handler;
      boost::asio::executor_work_guard<boost::asio::associated_executor_t<H>> work;
    };
    return std::make_unique<void_job>(std::move(fn), std::move(handler));
  }

  void enqueue(std::unique_ptr<job> j);
  void worker_loop();
  void execute(std::unique_ptr<pqxx::connection>& conn, job& j);
  std::unique_ptr<pqxx::connection> connect();

  std::string url_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<job>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace hookd::storage
