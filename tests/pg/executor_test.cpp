#include <cstdlib>
#include <thread>

#include "pg_fixture.hpp"
#include "storage/executor.hpp"
#include "storage/migrations.hpp"

using namespace hookd;

TEST_CASE("the executor runs jobs on its own threads and returns values to the coroutine") {
  test::temp_database db;
  storage::executor ex({db.url(), 2, 5, 30000});
  auto caller = std::this_thread::get_id();
  auto job = [](pqxx::connection& c) {
    pqxx::read_transaction tx(c);
    return std::make_pair(tx.exec1("select 40 + 2")[0].as<int>(), std::this_thread::get_id());
  };
  auto [value, thread] = test::await(ex.run(job));
  CHECK(value == 42);
  CHECK(thread != caller);
}

TEST_CASE("a job's exception reaches the awaiting coroutine") {
  test::temp_database db;
  storage::executor ex({db.url(), 1, 5, 30000});
  auto job = [](pqxx::connection& c) {
    pqxx::work tx(c);
    return tx.exec1("select * from no_such_table")[0].as<int>();
  };
  CHECK_THROWS_AS(test::await(ex.run(job)), pqxx::sql_error);
  auto ok = [](pqxx::connection& c) { return pqxx::read_transaction(c).exec1("select 1")[0].as<int>(); };
  CHECK(test::await(ex.run(ok)) == 1);  // the connection is still usable
}

TEST_CASE("statement_timeout from the options ends runaway queries") {
  test::temp_database db;
  storage::executor ex({db.url(), 1, 5, 200});
  auto slow = [](pqxx::connection& c) {
    pqxx::work tx(c);
    tx.exec("select pg_sleep(5)");
    return 0;
  };
  CHECK_THROWS(test::await(ex.run(slow)));
}

TEST_CASE("an unreachable database is a clear database_unavailable error") {
  storage::executor ex({"postgresql://nobody@127.0.0.1:1/none", 1, 2, 1000});
  auto job = [](pqxx::connection&) { return 1; };
  try {
    test::await(ex.run(job));
    FAIL("expected database_unavailable");
  } catch (const storage::database_unavailable& e) {
    CHECK(std::string(e.what()).find("cannot connect") != std::string::npos);
  }
}

TEST_CASE("the executor reconnects after its connection is terminated") {
  test::temp_database db;
  storage::executor ex({db.url(), 1, 5, 30000});
  auto pid_job = [](pqxx::connection& c) {
    return pqxx::read_transaction(c).exec1("select pg_backend_pid()")[0].as<int>();
  };
  int first = test::await(ex.run(pid_job));
  {
    pqxx::connection admin(db.url());
    pqxx::nontransaction(admin).exec("select pg_terminate_backend(" + std::to_string(first) + ")");
  }
  int second = test::await(ex.run(pid_job));
  CHECK(second != first);
}

TEST_CASE("the executor survives a restart of the PostgreSQL server") {
  const char* restart = std::getenv("HOOKD_TEST_PG_RESTART");
  REQUIRE_MESSAGE(restart, "HOOKD_TEST_PG_RESTART (a command restarting the test server) is not set");
  test::temp_database db;
  storage::executor ex({db.url(), 2, 5, 30000});
  auto job = [](pqxx::connection& c) {
    return pqxx::read_transaction(c).exec1("select 7")[0].as<int>();
  };
  REQUIRE(test::await(ex.run(job)) == 7);
  REQUIRE(std::system(restart) == 0);
  CHECK(test::await(ex.run(job)) == 7);
  CHECK(test::await(ex.run(job)) == 7);
}

TEST_CASE("migrations apply once, also when instances start together") {
  test::temp_database db;
  std::vector<std::thread> threads;
  std::atomic<int> applied{0};
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      pqxx::connection c(db.url());
      applied += storage::apply_migrations(c);
    });
  for (auto& t : threads) t.join();
  CHECK(applied == static_cast<int>(storage::all_migrations().size()));
  pqxx::connection c(db.url());
  CHECK(storage::applied_migration_version(c) == storage::latest_migration_version());
  CHECK(storage::apply_migrations(c) == 0);
  pqxx::read_transaction tx(c);
  CHECK(tx.exec1("select count(*) from hookd_schema_migrations")[0].as<int>() ==
        static_cast<int>(storage::all_migrations().size()));
  CHECK(tx.exec1("select to_regclass('webhooks') is not null")[0].as<bool>());
}
