#pragma once
// The snapshot diff, as pure functions: which observed records are created, updated or
// deleted relative to what a feed's snapshot knows.
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace hookd::changes {

enum class change_kind { created, updated, deleted };
const char* to_string(change_kind k);

struct observed_record {
  std::string id;
  std::string hash;  // record_hash() of the mapped record
  std::string json;  // the mapped record (with raw)
  bool tombstone = false;
};

struct change {
  std::string id;
  change_kind kind;
  std::string hash;  // empty for deletes
  std::string json;  // the new state; for deletes the storage layer keeps the last known one
};

// Compares observed records with the snapshot's hashes for those ids (`known`: id -> hash,
// only the ids the snapshot has). An id observed twice counts once, with its last state.
std::vector<change> diff_observed(const std::vector<observed_record>& observed,
                                  const std::unordered_map<std::string, std::string>& known);

// Ids in the snapshot that a complete scan did not see.
std::vector<std::string> absent_ids(const std::vector<std::string>& snapshot_ids,
                                    const std::unordered_set<std::string>& seen);

// The mass-delete guard. If a scan would delete more than `max_fraction` of the snapshot,
// only the ids that a previous scan also found absent (`pending`) are deleted now; the
// others wait (become the new pending set) for a second scan to agree.
struct delete_decision {
  std::vector<std::string> apply;
  std::vector<std::string> hold;
};
delete_decision guard_deletes(const std::vector<std::string>& absent, std::size_t snapshot_size,
                              double max_fraction, const std::vector<std::string>& pending);

}  // namespace hookd::changes
