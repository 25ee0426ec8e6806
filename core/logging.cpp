#include "core/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "core/json.hpp"
#include "core/time.hpp"

namespace hookd {
namespace {

log_format current_format = log_format::text;
// Marks a message whose payload is already JSON members (from log_event).
constexpr char event_marker = '\x1f';

class json_formatter final : public spdlog::formatter {
public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line = "{\"time\":";
    json::append_quoted(line, format_iso8601(std::chrono::time_point_cast<sys_time::duration>(msg.time)));
    line += ",\"level\":";
    auto lvl = spdlog::level::to_string_view(msg.level);
    json::append_quoted(line, std::string_view(lvl.data(), lvl.size()));
    std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!payload.empty() && payload.front() == event_marker) {
      line += ',';
      line += payload.substr(1);
    } else {
      line += ",\"msg\":";
      json::append_quoted(line, payload);
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

}  // namespace

void setup_logging(log_format format, const std::string& level) {
  current_format = format;
  auto logger = std::make_shared<spdlog::logger>(
      "hookd", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (format == log_format::json) logger->set_formatter(std::make_unique<json_formatter>());
  else logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

void log_event(spdlog::level::level_enum level, std::string_view event,
               const std::vector<log_field>& fields) {
  if (!spdlog::should_log(level)) return;
  std::string out;
  if (current_format == log_format::json) {
    out.push_back(event_marker);
    out += "\"event\":";
    json::append_quoted(out, event);
    for (const auto& f : fields) {
      out.push_back(',');
      json::append_quoted(out, f.key);
      out.push_back(':');
      if (f.quoted) json::append_quoted(out, f.value);
      else out += f.value;
    }
  } else {
    out = std::string(event);
    for (const auto& f : fields) {
      out += fmt::format(" {}=", f.key);
      bool needs_quotes = f.value.empty() || f.value.find(' ') != std::string::npos;
      out += needs_quotes ? fmt::format("\"{}\"", f.value) : f.value;
    }
  }
  spdlog::log(level, "{}", out);
}

}  // namespace hookd
