#include "core/json_input.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

namespace hookd::json {

namespace {

using simdjson::dom::element;

// A key as it may appear in an error: at most 64 bytes (cut at a character boundary), and
// ASCII only when the client's bytes are not valid UTF-8 (the error body must be).
std::string printable(std::string_view s) {
  constexpr std::size_t max_bytes = 64;
  bool cut = s.size() > max_bytes;
  if (cut) {
    std::size_t n = max_bytes;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    s = s.substr(0, n);
  }
  std::string out(s);
  if (!simdjson::validate_utf8(out.data(), out.size()))
    for (auto& c : out)
      if (static_cast<unsigned char>(c) >= 0x80) c = '?';
  if (cut) out += "...";
  return out;
}

// The path of the member being looked at, as error bodies name fields: "auth.meta", "tags[2]".
class member_path {
public:
  void push_key(std::string_view key) { segments_.push_back(printable(key)); }
  void push_index(std::size_t i) { segments_.push_back(fmt::format("[{}]", i)); }
  void pop() { segments_.pop_back(); }
  std::string str() const {
    std::string out;
    for (const auto& s : segments_) {
      if (!out.empty() && s.front() != '[') out.push_back('.');
      out += s;
    }
    return out;
  }
  // "'auth.meta'", or "the body" at the top.
  std::string where() const { return segments_.empty() ? "the body" : "'" + str() + "'"; }

private:
  std::vector<std::string> segments_;
};

input_problem too_deep(std::size_t max_depth) {
  return {"", fmt::format("the JSON nests objects and arrays deeper than {} levels", max_depth)};
}

// After a successful parse: the checks simdjson does not make.
class tree_check {
public:
  explicit tree_check(std::size_t max_depth) : max_depth_(max_depth) {}

  std::optional<input_problem> value(element e, std::size_t depth) {
    if (e.is_object()) return object(e.get_object().value_unsafe(), depth + 1);
    if (e.is_array()) return array(e.get_array().value_unsafe(), depth + 1);
    if (e.is_string() && has_nul(e.get_string().value_unsafe()))
      return input_problem{path_.str(), path_.where() + " contains a NUL character (\\u0000)"};
    return std::nullopt;
  }

private:
  static bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

  std::optional<input_problem> object(simdjson::dom::object members, std::size_t depth) {
    if (depth > max_depth_) return too_deep(max_depth_);
    if (auto p = keys(members)) return p;
    for (auto [k, v] : members) {
      path_.push_key(k);
      auto p = value(v, depth);
      path_.pop();
      if (p) return p;
    }
    return std::nullopt;
  }

  std::optional<input_problem> array(simdjson::dom::array items, std::size_t depth) {
    if (depth > max_depth_) return too_deep(max_depth_);
    std::size_t i = 0;
    for (element item : items) {
      path_.push_index(i++);
      auto p = value(item, depth);
      path_.pop();
      if (p) return p;
    }
    return std::nullopt;
  }

  // A key with NUL, or one that appears twice (reported at its path).
  std::optional<input_problem> keys(simdjson::dom::object members) {
    std::vector<std::string_view> seen;
    seen.reserve(members.size());
    for (auto [k, v] : members) {
      if (has_nul(k))
        return input_problem{path_.str(), "a key in " + path_.where() +
                                              " contains a NUL character (\\u0000)"};
      seen.push_back(k);
    }
    std::sort(seen.begin(), seen.end());
    auto twice = std::adjacent_find(seen.begin(), seen.end());
    if (twice == seen.end()) return std::nullopt;
    path_.push_key(*twice);
    input_problem p{path_.str(), path_.where() + " appears twice; a key may appear only once "
                                                 "in an object"};
    path_.pop();
    return p;
  }

  std::size_t max_depth_;
  member_path path_;
};

// After a failed parse: walks the text to name the member simdjson refused (a number out of
// range, a string that is not valid UTF-8 or has an unpaired surrogate, too deep a nesting).
// Gives up, returning nothing, at anything else (a syntax error keeps simdjson's message).
class locator {
public:
  locator(std::string_view text, std::size_t max_depth) : text_(text), max_depth_(max_depth) {}

  std::optional<input_problem> run() {
    value(0);
    return std::move(found_);
  }

private:
  // Each returns false when the walk stops: a problem was found, or the text is malformed.
  bool value(std::size_t depth) {
    skip_space();
    if (pos_ >= text_.size()) return false;
    char c = text_[pos_];
    if (c == '{' || c == '[') {
      if (depth + 1 > max_depth_) return stop(too_deep(max_depth_));
      return c == '{' ? object(depth + 1) : array(depth + 1);
    }
    if (c == '"') return string(nullptr);
    if (c == '-' || (c >= '0' && c <= '9')) return number();
    for (std::string_view word : {"true", "false", "null"})
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return true;
      }
    return false;
  }

  bool object(std::size_t depth) {
    ++pos_;
    if (peek() == '}') return ++pos_, true;
    for (;;) {
      skip_space();
      std::string_view key;
      if (peek() != '"' || !string(&key)) return false;
      skip_space();
      if (peek() != ':') return false;
      ++pos_;
      path_.push_key(key);
      bool ok = value(depth);
      path_.pop();
      if (!ok) return false;
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') return ++pos_, true;
      return false;
    }
  }

  bool array(std::size_t depth) {
    ++pos_;
    if (peek() == ']') return ++pos_, true;
    for (std::size_t i = 0;; ++i) {
      path_.push_index(i);
      bool ok = value(depth);
      path_.pop();
      if (!ok) return false;
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') return ++pos_, true;
      return false;
    }
  }

  // A string; `key` (when given) receives its text as written, for the path.
  bool string(std::string_view* key) {
    auto start = ++pos_;
    std::string_view bad;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      auto c = static_cast<unsigned char>(text_[pos_]);
      if (c < 0x20 && bad.empty()) bad = "contains an unescaped control character";
      if (c == '\\') {
        if (pos_ + 1 < text_.size() && text_[pos_ + 1] == 'u' && bad.empty())
          bad = surrogate_problem(pos_);
        ++pos_;
      }
      ++pos_;
    }
    if (pos_ >= text_.size()) return false;
    auto raw = text_.substr(start, pos_ - start);
    ++pos_;
    if (bad.empty() && !simdjson::validate_utf8(raw.data(), raw.size())) bad = "is not valid UTF-8";
    if (key) *key = raw;
    if (bad.empty()) return true;
    if (!key) return stop({path_.str(), fmt::format("{} {}", path_.where(), bad)});
    return stop({path_.str(), fmt::format("a key in {} {}", path_.where(), bad)});
  }

  // For the \u escape at `at`: why it is not text (an unpaired UTF-16 surrogate), or "".
  std::string_view surrogate_problem(std::size_t at) const {
    auto unit = hex4(at + 2);
    if (!unit) return "";  // malformed: simdjson's message says so
    if (*unit >= 0xDC00 && *unit <= 0xDFFF) return "has an unpaired UTF-16 surrogate (\\uDC00-\\uDFFF)";
    if (*unit < 0xD800 || *unit > 0xDBFF) return "";
    auto next = text_.substr(at + 6, 2) == "\\u" ? hex4(at + 8) : std::nullopt;
    if (next && *next >= 0xDC00 && *next <= 0xDFFF) return "";
    return "has an unpaired UTF-16 surrogate (\\uD800-\\uDBFF)";
  }

  std::optional<unsigned> hex4(std::size_t at) const {
    if (at + 4 > text_.size()) return std::nullopt;
    unsigned v = 0;
    auto [end, ec] = std::from_chars(text_.data() + at, text_.data() + at + 4, v, 16);
    if (ec != std::errc() || end != text_.data() + at + 4) return std::nullopt;
    return v;
  }

  bool number() {
    auto start = pos_;
    while (pos_ < text_.size() && std::string_view("+-.eE0123456789").find(text_[pos_]) !=
                                      std::string_view::npos)
      ++pos_;
    auto token = text_.substr(start, pos_ - start);
    if (number_fits(token)) return true;
    return stop({path_.str(), fmt::format("{} is a number out of range: {}", path_.where(),
                                          printable(token.substr(0, 40)))});
  }

  // Cheap in-range checks first; simdjson decides the rest, so both agree on what is refused.
  static bool number_fits(std::string_view token) {
    const char* first = token.data();
    const char* last = first + token.size();
    bool integer = token.find_first_of(".eE") == std::string_view::npos;
    std::from_chars_result r{};
    if (integer && token.starts_with('-')) {
      std::int64_t i = 0;
      r = std::from_chars(first, last, i);
    } else if (integer) {
      std::uint64_t u = 0;
      r = std::from_chars(first, last, u);
    } else {
      double d = 0;
      r = std::from_chars(first, last, d);
    }
    // Malformed numbers are simdjson's to report; only the out-of-range ones are located.
    if (r.ec != std::errc::result_out_of_range) return true;
    simdjson::dom::parser parser;
    return !parser.parse(simdjson::padded_string(token)).error();
  }

  void skip_space() {
    while (pos_ < text_.size() && std::string_view(" \t\r\n").find(text_[pos_]) != std::string_view::npos)
      ++pos_;
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool stop(input_problem p) {
    found_ = std::move(p);
    return false;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::size_t max_depth_;
  member_path path_;
  std::optional<input_problem> found_;
};

}  // namespace

std::optional<input_problem> parse_input(std::string_view text, document& out,
                                         std::size_t max_depth) {
  if (auto err = document::parse(text, out)) {
    if (auto located = locator(text, max_depth).run()) return located;
    return input_problem{"", *err};
  }
  return tree_check(max_depth).value(out.root(), 0);
}

}  // namespace hookd::json
