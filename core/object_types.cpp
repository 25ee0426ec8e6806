#include "core/object_types.hpp"

#include <algorithm>
#include <array>

namespace hookd {
namespace {
constexpr std::string_view all_types[] = {
#include "object_types.inc"
};
}  // namespace

std::span<const std::string_view> unified_object_types() { return all_types; }

bool is_unified_object_type(std::string_view t) {
  return std::find(std::begin(all_types), std::end(all_types), t) != std::end(all_types);
}
}  // namespace hookd
