#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "pg_fixture.hpp"

int main(int argc, char** argv) {
  // Fail loudly, before any test runs, when there is no database to test against.
  try {
    pqxx::connection c(hookd::test::server_url());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "PostgreSQL tests cannot run: %s\n", e.what());
    return 1;
  }
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
