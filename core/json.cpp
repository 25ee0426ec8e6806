#include "core/json.hpp"

#include <charconv>
#include <cmath>

namespace hookd::json {

void append_quoted(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xf]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

std::string format_number(double d) {
  if (!std::isfinite(d)) return "null";
  if (d == std::trunc(d) && std::fabs(d) < 1e15) {
    return std::to_string(static_cast<std::int64_t>(d));
  }
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, p);
}

void writer::before_value() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_.push_back(',');
    first_.back() = false;
  }
}

writer& writer::begin_object() {
  before_value();
  out_.push_back('{');
  first_.push_back(true);
  return *this;
}
writer& writer::end_object() {
  out_.push_back('}');
  first_.pop_back();
  return *this;
}
writer& writer::begin_array() {
  before_value();
  out_.push_back('[');
  first_.push_back(true);
  return *this;
}
writer& writer::end_array() {
  out_.push_back(']');
  first_.pop_back();
  return *this;
}
writer& writer::key(std::string_view k) {
  before_value();
  append_quoted(out_, k);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}
writer& writer::value(std::string_view s) {
  before_value();
  append_quoted(out_, s);
  return *this;
}
writer& writer::value(bool b) {
  before_value();
  out_ += b ? "true" : "false";
  return *this;
}
writer& writer::value(double d) {
  before_value();
  out_ += format_number(d);
  return *this;
}
writer& writer::value(std::int64_t i) {
  before_value();
  out_ += std::to_string(i);
  return *this;
}
writer& writer::null() {
  before_value();
  out_ += "null";
  return *this;
}
writer& writer::raw(std::string_view already_json) {
  before_value();
  out_ += already_json;
  return *this;
}
writer& writer::field(std::string_view k, const std::vector<std::string>& v) {
  key(k);
  begin_array();
  for (const auto& s : v) value(s);
  return end_array();
}
writer& writer::field(std::string_view k, const std::map<std::string, std::string>& v) {
  key(k);
  begin_object();
  for (const auto& [name, val] : v) field(name, val);
  return end_object();
}

namespace {
// A parser allocates its buffers at its first parse: documents reuse spare ones (per thread,
// a few, and not those grown by a large document) instead of allocating them for every record.
constexpr std::size_t spare_parsers_max = 8;
constexpr std::size_t spare_parser_capacity_max = 1 << 20;
thread_local std::vector<std::unique_ptr<simdjson::dom::parser>> spare_parsers;
}  // namespace

document::~document() {
  if (parser_ && parser_->capacity() <= spare_parser_capacity_max && spare_parsers.size() < spare_parsers_max)
    spare_parsers.push_back(std::move(parser_));
}

std::optional<std::string> document::parse(std::string_view text, document& out) {
  if (!out.parser_) {
    if (!spare_parsers.empty()) {
      out.parser_ = std::move(spare_parsers.back());
      spare_parsers.pop_back();
    } else {
      out.parser_ = std::make_unique<simdjson::dom::parser>();
    }
  }
  simdjson::padded_string padded(text);
  auto result = out.parser_->parse(padded);
  if (result.error()) {
    return std::string("malformed JSON: ") + simdjson::error_message(result.error());
  }
  out.root_ = result.value_unsafe();
  return std::nullopt;
}

std::string to_string(simdjson::dom::element e) { return simdjson::minify(e); }

std::string string_array(const std::vector<std::string>& values) {
  writer w;
  w.begin_array();
  for (const auto& v : values) w.value(v);
  w.end_array();
  return w.take();
}

std::string string_map(const std::map<std::string, std::string>& values) {
  writer w;
  w.begin_object();
  for (const auto& [k, v] : values) w.field(k, v);
  w.end_object();
  return w.take();
}

std::vector<std::string> parse_string_array(std::string_view text) {
  std::vector<std::string> out;
  document doc;
  if (document::parse(text, doc) || !doc.root().is_array()) return out;
  simdjson::dom::array items = doc.root().get_array().value_unsafe();
  for (auto e : items)
    if (e.is_string()) out.emplace_back(e.get_string().value_unsafe());
  return out;
}

std::map<std::string, std::string> parse_string_map(std::string_view text) {
  std::map<std::string, std::string> out;
  document doc;
  if (document::parse(text, doc) || !doc.root().is_object()) return out;
  simdjson::dom::object members = doc.root().get_object().value_unsafe();
  for (auto [k, v] : members)
    if (v.is_string()) out.emplace(std::string(k), std::string(v.get_string().value_unsafe()));
  return out;
}

}  // namespace hookd::json
