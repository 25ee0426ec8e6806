#pragma once
// A fresh database per test on the PostgreSQL server named by HOOKD_TEST_DATABASE_URL
// (started by scripts/test). These tests fail, never skip, when it is absent.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <stdexcept>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <doctest/doctest.h>
#include <pqxx/pqxx>

#include "core/crypto.hpp"
#include "core/time.hpp"

namespace hookd::test {

inline std::string server_url() {
  const char* url = std::getenv("HOOKD_TEST_DATABASE_URL");
  if (!url || !*url)
    throw std::runtime_error(
        "HOOKD_TEST_DATABASE_URL is not set: the PostgreSQL tests need a server "
        "(run them through scripts/test, which starts one)");
  return url;
}

// Replaces the database name of a postgresql:// URL.
inline std::string with_database(const std::string& url, const std::string& name) {
  auto scheme_end = url.find("://") + 3;
  auto slash = url.find('/', scheme_end);
  auto query = url.find('?', scheme_end);
  std::string base = url.substr(0, slash == std::string::npos ? query : slash);
  std::string rest = query == std::string::npos ? "" : url.substr(query);
  return base + "/" + name + rest;
}

class temp_database {
public:
  temp_database() : name_("hookd_test_" + crypto::random_id()) {
    pqxx::connection admin(server_url());
    pqxx::nontransaction tx(admin);
    tx.exec("create database " + name_);
    url_ = with_database(server_url(), name_);
  }
  ~temp_database() {
    try {
      pqxx::connection admin(server_url());
      pqxx::nontransaction tx(admin);
      tx.exec("drop database if exists " + name_ + " with (force)");
    } catch (...) {
    }
  }
  const std::string& url() const { return url_; }

private:
  std::string name_;
  std::string url_;
};

// Time for the tests: fixed, moved only by advance() (safe from the database threads too).
class fixed_clock final : public clock {
public:
  sys_time now() const override { return sys_time{std::chrono::milliseconds(now_ms_.load())}; }
  void advance(std::chrono::milliseconds d) { now_ms_ += d.count(); }

private:
  std::atomic<std::int64_t> now_ms_{1'800'000'000'000};
};

// Leases run on the database's clock (now()), which a test cannot move: time passing for
// them is simulated by moving every lease's expiry `d` nearer (webhook run leases, delivery
// leases, feed poll leases).
inline void age_leases(pqxx::connection& c, std::chrono::milliseconds d) {
  pqxx::work tx(c);
  auto by = "interval '" + std::to_string(d.count()) + " milliseconds'";
  tx.exec0("update webhooks set lease_expires_at = lease_expires_at - " + by +
           " where lease_expires_at is not null");
  tx.exec0("update webhooks set delivery_expires_at = delivery_expires_at - " + by +
           " where delivery_expires_at is not null");
  tx.exec0("update feeds set poll_expires_at = poll_expires_at - " + by + " where poll_expires_at is not null");
  tx.commit();
}

// Runs an awaitable to completion on its own io_context.
template <class T>
T await(boost::asio::awaitable<T> a) {
  boost::asio::io_context ioc;
  auto fut = boost::asio::co_spawn(ioc, std::move(a), boost::asio::use_future);
  ioc.run();
  return fut.get();
}

}  // namespace hookd::test
