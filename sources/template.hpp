#pragma once
// Templates in integration definitions: "{auth.KEY}", "{auth.meta.KEY}", and alternatives
// "{auth.token|auth.access_token}" (the first that is set; a trailing empty alternative,
// "{auth.token|}", makes the value optional).
#include <optional>
#include <string>
#include <string_view>

#include <simdjson.h>

namespace hookd::sources {

struct expansion {
  std::string value;
  std::string missing;  // non-empty: the key that has no value (the template cannot expand)
  explicit operator bool() const { return missing.empty(); }
};

// `auth` is the connection's auth object (may be null/absent).
expansion expand_template(std::string_view text, std::optional<simdjson::dom::element> auth);

}  // namespace hookd::sources
