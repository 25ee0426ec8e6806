// libFuzzer target for json::parse_input, the parser of API request bodies (untrusted input):
// it must never crash, and what it reports must be valid UTF-8 (it goes into an error body).
// Built with -DHOOKD_FUZZ=ON and clang; run: build/tests/json_input_fuzz -max_total_time=120
#include <cstdint>
#include <string_view>

#include "core/json_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hookd::json::document doc;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // A low depth limit, so that short inputs reach it too.
  auto problem = hookd::json::parse_input(text, doc, 8);
  if (problem && (!simdjson::validate_utf8(problem->field.data(), problem->field.size()) ||
                  !simdjson::validate_utf8(problem->message.data(), problem->message.size())))
    __builtin_trap();
  return 0;
}
