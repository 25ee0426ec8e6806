#include <doctest/doctest.h>

#include "core/time.hpp"

using namespace hookd;

TEST_CASE("ISO-8601 formatting is UTC with milliseconds and Z") {
  CHECK(format_iso8601(from_unix_millis(0)) == "1970-01-01T00:00:00.000Z");
  CHECK(format_iso8601(from_unix_millis(1700000000123)) == "2023-11-14T22:13:20.123Z");
}

TEST_CASE("ISO-8601 parsing accepts dates, Z and offsets") {
  CHECK(parse_iso8601("2023-11-14T22:13:20.123Z") == from_unix_millis(1700000000123));
  CHECK(parse_iso8601("2023-11-14T22:13:20Z") == from_unix_millis(1700000000000));
  CHECK(parse_iso8601("2023-11-15T00:13:20+02:00") == from_unix_millis(1700000000000));
  CHECK(parse_iso8601("1970-01-02") == from_unix_millis(86400000));
  CHECK_FALSE(parse_iso8601("yesterday"));
  CHECK_FALSE(parse_iso8601("2023-13-01"));
  CHECK_FALSE(parse_iso8601("2023-11-14T25:00:00Z"));
  CHECK_FALSE(parse_iso8601("2023-11-14T22:13:20Zjunk"));
}
