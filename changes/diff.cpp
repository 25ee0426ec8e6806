#include "changes/diff.hpp"

#include <algorithm>

namespace hookd::changes {

const char* to_string(change_kind k) {
  switch (k) {
    case change_kind::created: return "created";
    case change_kind::updated: return "updated";
    case change_kind::deleted: return "deleted";
  }
  return "?";
}

std::vector<change> diff_observed(const std::vector<observed_record>& observed,
                                  const std::unordered_map<std::string, std::string>& known) {
  // The last observation of each id wins (pages may overlap while the source changes).
  std::unordered_map<std::string, std::size_t> last;
  for (std::size_t i = 0; i < observed.size(); ++i) last[observed[i].id] = i;
  std::vector<change> out;
  for (std::size_t i = 0; i < observed.size(); ++i) {
    const auto& r = observed[i];
    if (last[r.id] != i) continue;
    auto it = known.find(r.id);
    if (r.tombstone) {
      if (it != known.end()) out.push_back({r.id, change_kind::deleted, "", r.json});
    } else if (it == known.end()) {
      out.push_back({r.id, change_kind::created, r.hash, r.json});
    } else if (it->second != r.hash) {
      out.push_back({r.id, change_kind::updated, r.hash, r.json});
    }
  }
  return out;
}

std::vector<std::string> absent_ids(const std::vector<std::string>& snapshot_ids,
                                    const std::unordered_set<std::string>& seen) {
  std::vector<std::string> out;
  for (const auto& id : snapshot_ids)
    if (!seen.contains(id)) out.push_back(id);
  return out;
}

delete_decision confirm_deletes(const std::vector<std::string>& absent,
                                const std::vector<std::string>& pending) {
  delete_decision d;
  std::unordered_set<std::string> confirmed(pending.begin(), pending.end());
  for (const auto& id : absent) (confirmed.contains(id) ? d.apply : d.hold).push_back(id);
  return d;
}

}  // namespace hookd::changes
