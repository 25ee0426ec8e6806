#pragma once
// What change detection needs from storage: a feed's snapshot and change log. One page of
// a scan costs two round trips (read the known hashes, write the changes), whatever its size.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/awaitable.hpp>

#include "changes/diff.hpp"
#include "core/time.hpp"

namespace hookd::changes {

struct feed_state {
  std::int64_t id = 0;
  std::string connection_id;
  std::string object_type;
  std::map<std::string, std::string> filters;  // pushed down to the source
  bool baseline_done = false;
  std::int64_t polls = 0;
  std::int64_t record_count = 0;
  std::optional<sys_time> high_water;
  std::vector<std::string> pending_deletes;
  bool has_deleted_webhook = false;
  std::string last_error;  // the last poll's error; empty when it was complete
};

struct poll_outcome {
  bool complete = false;
  bool full = false;
  bool baseline_done = false;
  std::optional<sys_time> high_water;
  std::vector<std::string> pending_deletes;
  std::int64_t records_read = 0;
  std::int64_t changes = 0;
  int requests = 0;
  std::string error;
  std::optional<unsigned> auth_failure;
  std::int64_t skipped_records = 0;  // unusable records (no id, not an object) left out
  std::string skip_reason;           // the first of them, named
};

class feed_repository {
public:
  virtual ~feed_repository() = default;
  // id -> hash for those of `ids` that the snapshot has.
  virtual boost::asio::awaitable<std::unordered_map<std::string, std::string>> known_hashes(
      std::int64_t feed_id, std::vector<std::string> ids) = 0;
  // Upserts created/updated records into the snapshot, removes deleted ones, and (unless
  // `baseline`) appends every change to the change log, in one transaction.
  virtual boost::asio::awaitable<void> apply_changes(std::int64_t feed_id,
                                                     std::vector<change> changes,
                                                     bool baseline) = 0;
  virtual boost::asio::awaitable<std::vector<std::string>> snapshot_ids(std::int64_t feed_id) = 0;
  // Records the end of a poll and releases the feed's poll lease.
  virtual boost::asio::awaitable<void> finish_poll(std::int64_t feed_id, poll_outcome outcome) = 0;
};

}  // namespace hookd::changes
