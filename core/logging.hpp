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

void setup_logging(log_format format, const std::string& level);

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
