#include <doctest/doctest.h>

#include <vector>

#include <boost/asio/io_context.hpp>

#include "net/connection_table.hpp"

using hookd::net::connection_table;

namespace {

// Admits a connection whose close records its number in `closed`.
connection_table::slot_ptr admit(connection_table& t, boost::asio::io_context& ioc,
                                 std::vector<int>& closed, int number) {
  auto s = t.admit(ioc.get_executor());
  if (s) s->on_close([&closed, number] { closed.push_back(number); });
  return s;
}

}  // namespace

TEST_CASE("connections up to the limit are admitted without closing any") {
  boost::asio::io_context ioc;
  connection_table t(3);
  std::vector<int> closed;
  for (int i = 0; i < 3; ++i) REQUIRE(admit(t, ioc, closed, i));
  ioc.run();
  CHECK(closed.empty());
  CHECK(t.size() == 3);
}

TEST_CASE("past the limit, the connection waiting longest for a request is closed") {
  boost::asio::io_context ioc;
  connection_table t(3);
  std::vector<int> closed;
  auto a = admit(t, ioc, closed, 0);
  auto b = admit(t, ioc, closed, 1);
  auto c = admit(t, ioc, closed, 2);
  // a finished a request and waits again: b has now waited longest.
  t.busy(a);
  t.waiting(a);
  auto d = admit(t, ioc, closed, 3);
  REQUIRE(d);
  ioc.run();
  CHECK(closed == std::vector<int>{1});
  CHECK(t.size() == 3);
  // The closed one's session ends later; that does not free a second place.
  t.release(b);
  CHECK(t.size() == 3);
  t.waiting(b);  // nor does a late state change put it back
  ioc.restart();
  REQUIRE(admit(t, ioc, closed, 4));
  ioc.run();
  CHECK(closed == std::vector<int>{1, 2});
}

TEST_CASE("a connection with a request being handled is never closed; with all busy, new ones are refused") {
  boost::asio::io_context ioc;
  connection_table t(2);
  std::vector<int> closed;
  auto a = admit(t, ioc, closed, 0);
  auto b = admit(t, ioc, closed, 1);
  t.busy(a);
  t.busy(b);
  CHECK_FALSE(admit(t, ioc, closed, 2));
  ioc.run();
  CHECK(closed.empty());
  // Once one waits again, it makes room.
  t.waiting(b);
  ioc.restart();
  CHECK(admit(t, ioc, closed, 3));
  ioc.run();
  CHECK(closed == std::vector<int>{1});
}

TEST_CASE("a released connection frees its place") {
  boost::asio::io_context ioc;
  connection_table t(1);
  std::vector<int> closed;
  auto a = admit(t, ioc, closed, 0);
  t.release(a);
  CHECK(t.size() == 0);
  CHECK(admit(t, ioc, closed, 1));
  ioc.run();
  CHECK(closed.empty());
}

TEST_CASE("shedding closes the connection waiting longest, and nothing when all are busy") {
  boost::asio::io_context ioc;
  connection_table t(4);
  std::vector<int> closed;
  auto a = admit(t, ioc, closed, 0);
  auto b = admit(t, ioc, closed, 1);
  t.busy(a);
  CHECK(t.shed_one());
  t.busy(b);
  CHECK_FALSE(t.shed_one());
  ioc.run();
  CHECK(closed == std::vector<int>{1});
  CHECK(t.size() == 1);
}
