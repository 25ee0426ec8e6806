#pragma once
// JSON output (a small streaming writer) and input (simdjson's DOM parser).
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

namespace hookd::json {

// Appends `s` to `out` as a JSON string literal (quotes included).
void append_quoted(std::string& out, std::string_view s);

// Streaming writer. Commas are inserted automatically; keys are written with key().
class writer {
public:
  writer& begin_object();
  writer& end_object();
  writer& begin_array();
  writer& end_array();
  writer& key(std::string_view k);
  writer& value(std::string_view s);
  writer& value(const char* s) { return value(std::string_view{s}); }
  writer& value(const std::string& s) { return value(std::string_view{s}); }
  writer& value(bool b);
  writer& value(double d);
  writer& value(std::int64_t i);
  writer& value(int i) { return value(static_cast<std::int64_t>(i)); }
  writer& null();
  writer& raw(std::string_view already_json);  // a value that is already JSON text

  // key + value shorthands
  template <class T> writer& field(std::string_view k, const T& v) { key(k); return value(v); }
  template <class T> writer& field(std::string_view k, const std::optional<T>& v) {
    if (v) { key(k); value(*v); }
    return *this;
  }
  writer& field(std::string_view k, const std::vector<std::string>& v);
  writer& field(std::string_view k, const std::map<std::string, std::string>& v);

  const std::string& str() const { return out_; }
  std::string take() { return std::move(out_); }

private:
  void before_value();
  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written yet
  bool after_key_ = false;
};

// Formats a double the way JavaScript would print it when it is an integer
// (no ".0"), otherwise with the shortest round-trip representation.
std::string format_number(double d);

// A parsed document that owns its parser, so elements stay valid while it lives.
class document {
public:
  document() = default;
  document(document&&) noexcept = default;
  document& operator=(document&&) noexcept = default;
  ~document();  // gives its parser back for the next document of this thread
  // Returns an error message instead of throwing on malformed input.
  static std::optional<std::string> parse(std::string_view text, document& out);
  simdjson::dom::element root() const { return root_; }

private:
  std::unique_ptr<simdjson::dom::parser> parser_;
  simdjson::dom::element root_;
};

// Serialises a DOM element back to minified JSON.
std::string to_string(simdjson::dom::element e);

// JSON text of a list of strings / a string dictionary, and back (non-strings are skipped,
// malformed text gives an empty result).
std::string string_array(const std::vector<std::string>& values);
std::string string_map(const std::map<std::string, std::string>& values);
std::vector<std::string> parse_string_array(std::string_view text);
std::map<std::string, std::string> parse_string_map(std::string_view text);

}  // namespace hookd::json
