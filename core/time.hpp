#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace hookd {

using sys_time = std::chrono::system_clock::time_point;

// The source of "now". Injected everywhere so tests can control time.
class clock {
public:
  virtual ~clock() = default;
  virtual sys_time now() const = 0;
};

class system_clock final : public clock {
public:
  sys_time now() const override { return std::chrono::system_clock::now(); }
};

// "2026-11-27T15:54:53.123Z": ISO-8601, UTC, millisecond precision.
std::string format_iso8601(sys_time t);

// Accepts "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS[.fff]]" followed by "Z", "+HH:MM",
// "-HH:MM" or nothing (UTC). Returns nullopt for anything else.
std::optional<sys_time> parse_iso8601(std::string_view s);

inline std::int64_t to_unix_millis(sys_time t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
inline sys_time from_unix_millis(std::int64_t ms) {
  return sys_time{std::chrono::milliseconds{ms}};
}

}  // namespace hookd
