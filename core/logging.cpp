#include "core/logging.hpp"

#include <simdjson.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "core/json.hpp"
#include "core/time.hpp"

namespace hookd {
namespace {

log_format current_format = log_format::text;
// Marks a message whose payload is already JSON members (from log_event).
constexpr char event_marker = '\x1f';

// The length of the valid UTF-8 sequence at the start of `s`, 0 if it is not one (overlong
// forms, surrogates and code points over U+10FFFF included).
std::size_t utf8_sequence(std::string_view s) {
  auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  auto cont = [&](std::size_t i) { return i < s.size() && (b(i) & 0xc0) == 0x80; };
  unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xe0 && b(1) < 0xa0) return 0;   // overlong
    if (c == 0xed && b(1) >= 0xa0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xf0 && b(1) < 0x90) return 0;   // overlong
    if (c == 0xf4 && b(1) >= 0x90) return 0;  // over U+10FFFF
    return 4;
  }
  return 0;
}

void append_hex_byte(std::string& out, unsigned char c) {
  static constexpr char hex[] = "0123456789abcdef";
  out += "\\x";
  out.push_back(hex[c >> 4]);
  out.push_back(hex[c & 0xf]);
}

// A message's payload in a text line: escaped (see append_log_text).
class escaped_payload final : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    std::string line;
    append_log_text(line, std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<escaped_payload>();
  }
};

// A JSON string for a log line, valid UTF-8 whatever the value holds.
void append_json_log_string(std::string& out, std::string_view s) {
  if (simdjson::validate_utf8(s.data(), s.size())) json::append_quoted(out, s);
  else json::append_quoted(out, valid_utf8(s));
}

// An event value in a text line, quoted when it would otherwise be ambiguous.
void append_text_value(std::string& out, std::string_view v) {
  bool plain = !v.empty() && v.find_first_of(" \"=\\") == std::string_view::npos;
  if (plain) return out.append(v), void();
  out.push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
}

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
      append_json_log_string(line, payload);
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

}  // namespace

void append_log_text(std::string& out, std::string_view s) {
  while (!s.empty()) {
    auto c = static_cast<unsigned char>(s.front());
    std::size_t n = utf8_sequence(s);
    if (n > 1) {
      out.append(s.substr(0, n));
    } else if (n == 0 || c < 0x20 || c == 0x7f) {
      if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else append_hex_byte(out, c);
      n = 1;
    } else {
      out.push_back(static_cast<char>(c));
    }
    s.remove_prefix(n);
  }
}

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    std::size_t n = utf8_sequence(s);
    if (n == 0) {
      out += "\xef\xbf\xbd";  // U+FFFD
      n = 1;
    } else {
      out.append(s.substr(0, n));
    }
    s.remove_prefix(n);
  }
  return out;
}

void setup_logging(log_format format, const std::string& level, spdlog::sink_ptr sink) {
  current_format = format;
  if (!sink) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("hookd", std::move(sink));
  if (format == log_format::json) {
    logger->set_formatter(std::make_unique<json_formatter>());
  } else {
    auto text = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    text->add_flag<escaped_payload>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %*");
    logger->set_formatter(std::move(text));
  }
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
    append_json_log_string(out, event);
    for (const auto& f : fields) {
      out.push_back(',');
      append_json_log_string(out, f.key);
      out.push_back(':');
      if (f.quoted) append_json_log_string(out, f.value);
      else out += f.value;
    }
  } else {
    out = std::string(event);
    for (const auto& f : fields) {
      out += ' ';
      out += f.key;
      out += '=';
      append_text_value(out, f.value);
    }
  }
  spdlog::log(level, "{}", out);
}

}  // namespace hookd
