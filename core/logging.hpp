#pragma once
// Logging set-up (spdlog to stderr, text or JSON lines) and structured events: one event
// is one line, `event key=value ...` as text or one JSON object.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

namespace hookd {

enum class log_format { text, json };

// `sink` defaults to stderr; tests pass their own to read what a line looks like.
void setup_logging(log_format format, const std::string& level, spdlog::sink_ptr sink = nullptr);

// Log lines hold values that remote parties chose (URLs, error texts, record ids), so neither
// format lets a value forge a line or drive a terminal:
// - text: control characters, DEL and bytes that are not UTF-8 become \n, \r, \t or \xNN;
//   event values with a space, quote, '=' or backslash are quoted with \" and \\ escaped.
// - json: one object per line; strings are JSON-escaped and invalid UTF-8 becomes U+FFFD.
void append_log_text(std::string& out, std::string_view s);
// `s` with each byte of an invalid UTF-8 sequence replaced by U+FFFD.
std::string valid_utf8(std::string_view s);

struct log_field {
  std::string_view key;
  std::string value;
  bool quoted = true;  // false: a number or boolean, emitted bare in JSON

  log_field(std::string_view k, std::string v) : key(k), value(std::move(v)) {}
  log_field(std::string_view k, const char* v) : key(k), value(v) {}
  log_field(std::string_view k, std::string_view v) : key(k), value(v) {}
  template <class N, class = std::enable_if_t<std::is_arithmetic_v<N>>>
  log_field(std::string_view k, N n) : key(k), value(fmt::format("{}", n)), quoted(false) {}
};

void log_event(spdlog::level::level_enum level, std::string_view event,
               const std::vector<log_field>& fields);

}  // namespace hookd
