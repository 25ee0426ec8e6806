#pragma once
// Chooses the records of one delivery from a webhook's unread change log entries: the
// entries of its event, passing its client-side filters, coalesced to the latest state of
// each record, projected to its fields, at most page_max_limit records.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hookd::delivery {

struct log_entry {
  std::int64_t seq = 0;
  std::string record_id;
  std::string kind;    // created | updated | deleted
  std::string record;  // mapped record JSON (with raw)
};

struct batch {
  std::string data;           // JSON array of the projected records
  std::size_t count = 0;      // records in data
  std::int64_t seq_to = 0;    // the cursor after this delivery
  std::size_t used = 0;       // entries of the window (the next delivery starts after them)
  bool full = false;          // the window holds page_limit records of the event
};

// `entries` are in seq order, all after the webhook's cursor. When none matches, count is 0
// and seq_to is the last entry's seq (the cursor can skip them).
batch select_batch(std::span<const log_entry> entries, std::string_view event,
                   const std::map<std::string, std::string>& client_filters,
                   std::string_view fields, int page_limit);

// The record projected to `fields` (comma-separated; empty: every field but raw); id always.
std::string project(std::string_view record_json, std::string_view fields);

// Whether the record's top-level fields equal the filter values (strings compared as text).
bool matches_filters(std::string_view record_json, const std::map<std::string, std::string>& filters);

}  // namespace hookd::delivery
