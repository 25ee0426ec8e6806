// Log lines carry values remote parties chose: neither format lets one forge a line.
#include <doctest/doctest.h>

#include <sstream>
#include <string>

#include <spdlog/sinks/ostream_sink.h>

#include "core/json.hpp"
#include "core/logging.hpp"

using namespace hookd;

namespace {

// Logs through the real set-up into a string; the default logger is restored afterwards.
struct captured_log {
  std::ostringstream out;
  explicit captured_log(log_format format) {
    setup_logging(format, "info", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  }
  ~captured_log() { setup_logging(log_format::text, "warn"); }
  std::string text() const { return out.str(); }
};

std::size_t lines_in(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

const std::string hostile = "x\nlevel=error forged=1\r\x1b[31m\"q\" a\\b \xff\xfe end";

}  // namespace

TEST_CASE("text lines escape control characters and bytes that are not UTF-8") {
  std::string out;
  append_log_text(out, "a\nb\rc\td\x01\x7f\xc3\xa9\xff\xe2\x82");
  CHECK(out == "a\\nb\\rc\\td\\x01\\x7f\xc3\xa9\\xff\\xe2\\x82");
}

TEST_CASE("a text event is one line whatever its values hold") {
  std::string line;
  {
    captured_log log(log_format::text);
    log_event(spdlog::level::info, "delivery", {{"error", hostile}, {"url", "http://h/p?a=b"},
                                                {"status", 500}, {"empty", ""}});
    line = log.text();
  }
  CHECK(lines_in(line) == 1);
  CHECK(line.find('\x1b') == std::string::npos);
  CHECK(line.find('\r') == std::string::npos);
  CHECK(line.find('\xff') == std::string::npos);
  CHECK_MESSAGE(line.find(R"(error="x\nlevel=error forged=1\r\x1b[31m\"q\" a\\b \xff\xfe end")") !=
                    std::string::npos,
                line);
  CHECK_MESSAGE(line.find(R"( url="http://h/p?a=b" status=500 empty="")") != std::string::npos, line);
  CHECK(line.find(" info delivery error=") != std::string::npos);
}

TEST_CASE("a plain text message is escaped too") {
  std::string line;
  {
    captured_log log(log_format::text);
    spdlog::warn("source said: {}", hostile);
    line = log.text();
  }
  CHECK(lines_in(line) == 1);
  CHECK(line.find('\x1b') == std::string::npos);
  CHECK_MESSAGE(line.find(R"(source said: x\nlevel=error)") != std::string::npos, line);
}

TEST_CASE("a JSON event is one valid JSON object per line, invalid UTF-8 replaced") {
  std::string line;
  {
    captured_log log(log_format::json);
    log_event(spdlog::level::info, "delivery", {{"error", hostile}, {"records", 3}});
    spdlog::warn("plain {}", std::string("\xc0\x80 nul\0x", 8));
    line = log.text();
  }
  REQUIRE(lines_in(line) == 2);
  auto first = line.substr(0, line.find('\n'));
  auto second = line.substr(first.size() + 1);
  second.pop_back();
  json::document doc;
  REQUIRE_MESSAGE(!json::document::parse(first, doc), first);
  auto error = doc.root()["error"].get_string();
  REQUIRE(!error.error());
  CHECK(std::string(error.value()) ==
        "x\nlevel=error forged=1\r\x1b[31m\"q\" a\\b \xef\xbf\xbd\xef\xbf\xbd end");
  CHECK(doc.root()["records"].get_int64().value() == 3);
  CHECK(std::string(doc.root()["event"].get_string().value()) == "delivery");
  json::document doc2;
  REQUIRE_MESSAGE(!json::document::parse(second, doc2), second);
  CHECK(std::string(doc2.root()["msg"].get_string().value()) ==
        std::string("plain \xef\xbf\xbd\xef\xbf\xbd nul\0x", 18));
}

TEST_CASE("valid_utf8 keeps valid sequences and replaces each bad byte") {
  CHECK(valid_utf8("h\xc3\xa9 \xf0\x9f\x98\x80") == "h\xc3\xa9 \xf0\x9f\x98\x80");
  CHECK(valid_utf8("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // a surrogate
  CHECK(valid_utf8("\xf4\x90\x80\x80") ==
        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // over U+10FFFF
  CHECK(valid_utf8("\xe0\x80\xaf") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // overlong
}
