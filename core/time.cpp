#include "core/time.hpp"

#include <cctype>
#include <fmt/format.h>

namespace hookd {

std::string format_iso8601(sys_time t) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(t.time_since_epoch());
  auto day = floor<days>(ms);
  year_month_day ymd{sys_days{day}};
  auto in_day = ms - day;
  auto h = duration_cast<hours>(in_day);
  auto m = duration_cast<minutes>(in_day - h);
  auto s = duration_cast<seconds>(in_day - h - m);
  auto frac = in_day - h - m - s;
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", int(ymd.year()),
                     unsigned(ymd.month()), unsigned(ymd.day()), h.count(), m.count(),
                     s.count(), frac.count());
}

namespace {
// Reads exactly n digits at s[pos], advancing pos.
bool digits(std::string_view s, std::size_t& pos, int n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (int i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    out = out * 10 + (c - '0');
  }
  pos += n;
  return true;
}
bool expect(std::string_view s, std::size_t& pos, char c) {
  if (pos < s.size() && s[pos] == c) {
    ++pos;
    return true;
  }
  return false;
}
}  // namespace

std::optional<sys_time> parse_iso8601(std::string_view s) {
  using namespace std::chrono;
  std::size_t pos = 0;
  int y, mo, d, h = 0, mi = 0, se = 0;
  long long frac_ms = 0;
  if (!digits(s, pos, 4, y) || !expect(s, pos, '-') || !digits(s, pos, 2, mo) ||
      !expect(s, pos, '-') || !digits(s, pos, 2, d))
    return std::nullopt;
  year_month_day ymd{year{y}, month{unsigned(mo)}, day{unsigned(d)}};
  if (!ymd.ok()) return std::nullopt;
  if (pos < s.size() && (s[pos] == 'T' || s[pos] == 't' || s[pos] == ' ')) {
    ++pos;
    if (!digits(s, pos, 2, h) || !expect(s, pos, ':') || !digits(s, pos, 2, mi))
      return std::nullopt;
    if (expect(s, pos, ':')) {
      if (!digits(s, pos, 2, se)) return std::nullopt;
      if (expect(s, pos, '.')) {
        int n = 0;
        long long scale = 100;
        while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
          if (n < 3) frac_ms += (s[pos] - '0') * scale;
          scale /= 10;
          ++n;
          ++pos;
        }
        if (n == 0) return std::nullopt;
      }
    }
    if (h > 23 || mi > 59 || se > 60) return std::nullopt;
  }
  int offset_min = 0;
  if (pos < s.size()) {
    char c = s[pos];
    if (c == 'Z' || c == 'z') {
      ++pos;
    } else if (c == '+' || c == '-') {
      ++pos;
      int oh, om;
      if (!digits(s, pos, 2, oh)) return std::nullopt;
      expect(s, pos, ':');
      if (!digits(s, pos, 2, om)) return std::nullopt;
      offset_min = (oh * 60 + om) * (c == '+' ? 1 : -1);
    }
  }
  if (pos != s.size()) return std::nullopt;
  auto t = sys_days{ymd} + hours{h} + minutes{mi} + seconds{se} + milliseconds{frac_ms} -
           minutes{offset_min};
  return std::chrono::time_point_cast<std::chrono::system_clock::duration>(t);
}

}  // namespace hookd
