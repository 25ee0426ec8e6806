#include "delivery/batch.hpp"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "core/json.hpp"

namespace hookd::delivery {

namespace {

std::set<std::string, std::less<>> field_set(std::string_view fields) {
  std::set<std::string, std::less<>> out;
  while (!fields.empty()) {
    auto comma = fields.find(',');
    auto name = fields.substr(0, comma);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (!name.empty()) out.emplace(name);
    if (comma == std::string_view::npos) break;
    fields.remove_prefix(comma + 1);
  }
  return out;
}

std::string scalar_text(simdjson::dom::element e) {
  if (e.is_string()) return std::string(e.get_string().value_unsafe());
  return json::to_string(e);
}

}  // namespace

std::string project(std::string_view record_json, std::string_view fields) {
  json::document doc;
  if (json::document::parse(record_json, doc) || !doc.root().is_object()) return std::string(record_json);
  auto wanted = field_set(fields);
  json::writer w;
  w.begin_object();
  simdjson::dom::object members = doc.root().get_object().value_unsafe();
  for (auto [k, v] : members) {
    bool keep = k == "id" || (wanted.empty() ? k != "raw" : wanted.contains(k));
    if (keep) w.key(k).raw(json::to_string(v));
  }
  w.end_object();
  return w.take();
}

bool matches_filters(std::string_view record_json, const std::map<std::string, std::string>& filters) {
  if (filters.empty()) return true;
  json::document doc;
  if (json::document::parse(record_json, doc) || !doc.root().is_object()) return false;
  simdjson::dom::object obj = doc.root().get_object().value_unsafe();
  for (const auto& [key, wanted] : filters) {
    auto v = obj.at_key(key);
    if (v.error() || scalar_text(v.value_unsafe()) != wanted) return false;
  }
  return true;
}

batch select_batch(std::span<const log_entry> entries, std::string_view event,
                   const std::map<std::string, std::string>& client_filters,
                   std::string_view fields, int page_limit) {
  batch out;
  if (entries.empty()) return out;
  // First pass: which records this delivery carries, and the window's end.
  std::vector<std::string> order;
  std::unordered_map<std::string, std::size_t> latest;  // record id -> entry index
  std::unordered_map<std::string, bool> chosen;
  std::size_t end = entries.size();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    if (e.kind == event && !chosen.contains(e.record_id)) {
      if (static_cast<int>(order.size()) == page_limit) {
        end = i;
        out.full = true;
        break;
      }
      chosen[e.record_id] = true;
      order.push_back(e.record_id);
    }
  }
  // Coalesce: each chosen record in its latest state within the window.
  for (std::size_t i = 0; i < end; ++i) latest[entries[i].record_id] = i;
  out.seq_to = entries[end - 1].seq;
  out.used = end;
  if (static_cast<int>(order.size()) == page_limit) out.full = true;
  std::string data = "[";
  for (const auto& id : order) {
    const auto& record = entries[latest[id]].record;
    if (!matches_filters(record, client_filters)) continue;
    if (out.count) data.push_back(',');
    data += project(record, fields);
    ++out.count;
  }
  data.push_back(']');
  out.data = std::move(data);
  return out;
}

}  // namespace hookd::delivery
