#pragma once
// JSON from untrusted clients (API request bodies): simdjson's parse, plus the limits hookd
// puts on top so that every body it accepts can be stored and echoed back as it was meant.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/json.hpp"

namespace hookd::json {

// The deepest nesting of objects and arrays accepted in a request body. Unified.to bodies
// nest three or four levels (a connection's auth, a webhook's filters); 64 leaves room for
// any auth object and keeps the checks' recursion shallow.
constexpr std::size_t max_input_depth = 64;

// What is wrong with a body, and where: `field` is the path of the member ("page_max_limit",
// "auth.meta.token", "categories[2]"), empty when the problem is not in one member.
struct input_problem {
  std::string field;
  std::string message;
};

// Parses `text` into `out` and refuses, naming the member where it can: malformed JSON,
// invalid UTF-8 (raw, or an unpaired \uD800-\uDFFF escape), numbers out of range (beyond
// a double, or an integer beyond 64 bits), nesting deeper than `max_depth`, a key that
// appears twice in one object (JSON leaves the meaning open; hookd refuses rather than
// guessing), and NUL characters in strings or keys (PostgreSQL text cannot hold them).
std::optional<input_problem> parse_input(std::string_view text, document& out,
                                         std::size_t max_depth = max_input_depth);

}  // namespace hookd::json
