#pragma once
#include <span>
#include <string_view>

namespace hookd {
// Every object type Unified.to defines (compiled in from unified-object-types.txt).
std::span<const std::string_view> unified_object_types();
bool is_unified_object_type(std::string_view t);
}  // namespace hookd
