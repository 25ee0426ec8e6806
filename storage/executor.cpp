#include "storage/executor.hpp"

#include <spdlog/spdlog.h>

namespace hookd::storage {

std::string with_timeouts(const std::string& url, int connect_timeout_s,
                          int statement_timeout_ms) {
  bool is_uri = url.starts_with("postgres://") || url.starts_with("postgresql://");
  std::string options = fmt::format("-c statement_timeout={}", statement_timeout_ms);
  if (is_uri) {
    char sep = url.find('?') == std::string::npos ? '?' : '&';
    return fmt::format("{}{}connect_timeout={}&options=-c%20statement_timeout%3D{}", url, sep,
                       connect_timeout_s, statement_timeout_ms);
  }
  return fmt::format("{} connect_timeout={} options='{}'", url, connect_timeout_s, options);
}

executor::executor(executor_options opts)
    : url_(with_timeouts(opts.url, opts.connect_timeout_seconds, opts.statement_timeout_ms)) {
  for (int i = 0; i < opts.pool_size; ++i) threads_.emplace_back([this] { worker_loop(); });
}

executor::~executor() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void executor::enqueue(std::unique_ptr<job> j) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back(std::move(j));
      j = nullptr;
    }
  }
  if (j) {
    j->fail(std::make_exception_ptr(database_unavailable("the database executor is stopping")));
    return;
  }
  cv_.notify_one();
}

std::unique_ptr<pqxx::connection> executor::connect() {
  try {
    return std::make_unique<pqxx::connection>(url_);
  } catch (const std::exception& e) {
    // libpq's message names host and reason, never the password.
    throw database_unavailable(std::string("cannot connect to PostgreSQL: ") + e.what());
  }
}

void executor::execute(std::unique_ptr<pqxx::connection>& conn, job& j) {
  for (int attempt = 0;; ++attempt) {
    try {
      if (!conn || !conn->is_open()) conn = connect();
      j.run(*conn);
      return;
    } catch (const pqxx::in_doubt_error&) {
      conn.reset();
      throw;
    } catch (const pqxx::broken_connection& e) {
      conn.reset();
      if (attempt >= 1)
        throw database_unavailable(std::string("lost the PostgreSQL connection: ") + e.what());
      spdlog::warn("database connection lost ({}); reconnecting", e.what());
    } catch (const database_unavailable&) {
      conn.reset();
      if (attempt >= 1) throw;
    } catch (const std::exception& e) {
      // A server restart can surface as an SQL error ("terminating connection due to
      // administrator command") with the connection closed underneath: retry that once.
      if (!conn || conn->is_open() || attempt >= 1) throw;
      conn.reset();
      spdlog::warn("database connection closed ({}); reconnecting", e.what());
    }
  }
}

void executor::worker_loop() {
  std::unique_ptr<pqxx::connection> conn;
  for (;;) {
    std::unique_ptr<job> j;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      j = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      execute(conn, *j);
    } catch (...) {
      j->fail(std::current_exception());
    }
  }
}

}  // namespace hookd::storage
