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

// A record absent from one complete scan may only have been missed: offset- and page-paginated
// sources shift records across pages when one is deleted mid-scan. So a delete needs two
// complete full scans that both lack the record: ids absent now and absent in the previous
// scan (`pending`) are deleted (`apply`); the others absent now wait for the next scan (`hold`).
// Ids absent before but seen now are simply forgotten.
struct delete_decision {
  std::vector<std::string> apply;
  std::vector<std::string> hold;
};
delete_decision confirm_deletes(const std::vector<std::string>& absent,
                                const std::vector<std::string>& pending);

}  // namespace hookd::changes
