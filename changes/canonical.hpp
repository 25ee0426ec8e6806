#pragma once
// Canonical JSON of a record (object keys sorted, numbers normalised, volatile fields and
// "raw" left out) and its hash: two records are "the same" for change detection exactly
// when their hashes are equal.
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

namespace hookd::changes {

// Appends the canonical form of `e` to `out`. At the top level, members named in `skip`
// are left out.
void append_canonical(std::string& out, simdjson::dom::element e,
                      const std::vector<std::string>& skip = {});

// Canonical JSON of a mapped record: without "raw" and the volatile fields.
std::string canonical_record(simdjson::dom::element record,
                             const std::vector<std::string>& volatile_fields);

// The hash record_hash would give the record {"id": id, <members but id and raw>} (the
// identity mapping's output), computed from the source record itself, without writing the
// mapped record and parsing it again.
std::string identity_record_hash(std::string_view id, simdjson::dom::object members,
                                 const std::vector<std::string>& volatile_fields);

// SHA-256 of the canonical record, hex.
std::string record_hash(simdjson::dom::element record,
                        const std::vector<std::string>& volatile_fields);

}  // namespace hookd::changes
