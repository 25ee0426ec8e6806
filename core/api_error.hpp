#pragma once
#include <string>

#include "core/json.hpp"

namespace hookd {

// An expected failure of an API request, rendered as
// {"error":{"status":400,"code":"invalid_field","field":"event","message":"..."}}.
struct api_error {
  int status = 400;
  std::string code;
  std::string field;  // empty when the error is not about one field
  std::string message;

  std::string to_json() const {
    json::writer w;
    w.begin_object().key("error").begin_object();
    w.field("status", status).field("code", code);
    if (!field.empty()) w.field("field", field);
    w.field("message", message);
    w.end_object().end_object();
    return w.take();
  }
};

inline api_error invalid_field(std::string field, std::string message) {
  return {400, "invalid_field", std::move(field), std::move(message)};
}

}  // namespace hookd
