#pragma once
// The mapping language of integration definitions: builds a Unified record from a source
// record (see docs/integration-definitions.md, "mapping").
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <simdjson.h>

namespace hookd::sources {

struct mapping_node {
  enum class kind { pointer, literal, convert, join, each, object, array };
  kind type = kind::literal;
  std::string text;  // pointer ("@" = the element itself) or literal
  std::string as;    // convert: string | number | boolean | timestamp
  std::string sep;   // join
  std::vector<mapping_node> items;                            // join parts, array items, each: [child]
  std::vector<std::pair<std::string, mapping_node>> fields;   // object
};

// The value at a JSON pointer ("" or "@" = the element itself); nullopt when absent or null.
std::optional<simdjson::dom::element> resolve_pointer(simdjson::dom::element e,
                                                      std::string_view pointer);

// Renders `node` against `source` as JSON text; nullopt when the value is absent.
std::optional<std::string> render(const mapping_node& node, simdjson::dom::element source);

// A timestamp from an ISO-8601 string, unix seconds or unix milliseconds (number or digits),
// as ISO-8601 UTC with Z; nullopt when it is none of those.
std::optional<std::string> to_timestamp(simdjson::dom::element e);

}  // namespace hookd::sources
