#include "changes/canonical.hpp"

#include <algorithm>
#include <cmath>

#include "core/crypto.hpp"
#include "core/json.hpp"

namespace hookd::changes {

using simdjson::dom::element;

namespace {

void append_number(std::string& out, element e) {
  // 1, 1.0 and 1e0 are the same number: integers print without a fraction, other values
  // in the shortest round-trip form.
  if (e.is_int64()) {
    out += std::to_string(e.get_int64().value_unsafe());
  } else if (e.is_uint64()) {
    out += std::to_string(e.get_uint64().value_unsafe());
  } else {
    double d = e.get_double().value_unsafe();
    if (d == 0) d = 0;  // -0 == 0
    if (d == std::trunc(d) && std::fabs(d) < 9.2e18) out += std::to_string(static_cast<std::int64_t>(d));
    else out += json::format_number(d);
  }
}

}  // namespace

void append_canonical(std::string& out, element e, const std::vector<std::string>& skip) {
  switch (e.type()) {
    case simdjson::dom::element_type::OBJECT: {
      simdjson::dom::object obj = e.get_object().value_unsafe();
      std::vector<std::pair<std::string_view, element>> members;
      for (auto [k, v] : obj)
        if (std::find(skip.begin(), skip.end(), k) == skip.end()) members.emplace_back(k, v);
      std::sort(members.begin(), members.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      out.push_back('{');
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (i) out.push_back(',');
        json::append_quoted(out, members[i].first);
        out.push_back(':');
        append_canonical(out, members[i].second);
      }
      out.push_back('}');
      break;
    }
    case simdjson::dom::element_type::ARRAY: {
      simdjson::dom::array arr = e.get_array().value_unsafe();
      out.push_back('[');
      bool first = true;
      for (element item : arr) {
        if (!first) out.push_back(',');
        first = false;
        append_canonical(out, item);
      }
      out.push_back(']');
      break;
    }
    case simdjson::dom::element_type::STRING:
      json::append_quoted(out, e.get_string().value_unsafe());
      break;
    case simdjson::dom::element_type::INT64:
    case simdjson::dom::element_type::UINT64:
    case simdjson::dom::element_type::DOUBLE:
      append_number(out, e);
      break;
    case simdjson::dom::element_type::BOOL:
      out += e.get_bool().value_unsafe() ? "true" : "false";
      break;
    case simdjson::dom::element_type::NULL_VALUE:
      out += "null";
      break;
  }
}

std::string canonical_record(element record, const std::vector<std::string>& volatile_fields) {
  std::vector<std::string> skip = volatile_fields;
  skip.emplace_back("raw");
  std::string out;
  append_canonical(out, record, skip);
  return out;
}

std::string identity_record_hash(std::string_view id, simdjson::dom::object members,
                                 const std::vector<std::string>& volatile_fields) {
  auto skipped = [&](std::string_view k) {
    return k == "id" || k == "raw" ||
           std::find(volatile_fields.begin(), volatile_fields.end(), k) != volatile_fields.end();
  };
  std::vector<std::pair<std::string_view, element>> kept;
  for (auto [k, v] : members)
    if (!skipped(k)) kept.emplace_back(k, v);
  bool with_id = std::find(volatile_fields.begin(), volatile_fields.end(), "id") == volatile_fields.end();
  std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string out = "{";
  bool id_written = !with_id;
  bool first = true;
  auto write_id = [&] {
    if (!first) out.push_back(',');
    first = false;
    json::append_quoted(out, "id");
    out.push_back(':');
    json::append_quoted(out, id);
    id_written = true;
  };
  for (const auto& [k, v] : kept) {
    if (!id_written && std::string_view("id") < k) write_id();
    if (!first) out.push_back(',');
    first = false;
    json::append_quoted(out, k);
    out.push_back(':');
    append_canonical(out, v);
  }
  if (!id_written) write_id();
  out.push_back('}');
  return crypto::sha256_hex(out);
}

std::string record_hash(element record, const std::vector<std::string>& volatile_fields) {
  return crypto::sha256_hex(canonical_record(record, volatile_fields));
}

}  // namespace hookd::changes
