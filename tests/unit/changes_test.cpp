// Change detection as pure functions: the canonical JSON and hash of a record, the snapshot
// diff (as properties over random record sets and random creates/updates/deletes, with complete
// scans, incremental overlap and partial scans), delete confirmation, when a poll must be a
// full scan, and the no-drift schedule.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>

#include "changes/canonical.hpp"
#include "changes/diff.hpp"
#include "core/crypto.hpp"
#include "core/json.hpp"
#include "scheduler/feed_poll.hpp"
#include "scheduler/scheduler.hpp"

using namespace hookd;
using namespace hookd::changes;

namespace {

// ---- canonical JSON helpers ----

std::string canon(const std::string& text, const std::vector<std::string>& volatile_fields = {}) {
  json::document doc;
  auto err = json::document::parse(text, doc);
  REQUIRE_MESSAGE(!err, text);
  return canonical_record(doc.root(), volatile_fields);
}

std::string hash_of(const std::string& text, const std::vector<std::string>& volatile_fields = {}) {
  json::document doc;
  auto err = json::document::parse(text, doc);
  REQUIRE_MESSAGE(!err, text);
  return record_hash(doc.root(), volatile_fields);
}

}  // namespace

TEST_CASE("canonical JSON: object keys are sorted, at every depth; arrays keep their order") {
  CHECK(canon(R"({"b":1,"a":2,"c":{"z":true,"y":null,"x":[3,{"q":1,"p":2}]}})") ==
        R"({"a":2,"b":1,"c":{"x":[3,{"p":2,"q":1}],"y":null,"z":true}})");
  CHECK(hash_of(R"({"b":1,"a":2})") == hash_of(R"({"a":2,"b":1})"));
  CHECK(hash_of(R"({"o":{"b":1,"a":2}})") == hash_of(R"({"o":{"a":2,"b":1}})"));
  CHECK(hash_of(R"({"l":[1,2]})") != hash_of(R"({"l":[2,1]})"));
  // Whitespace is not content.
  CHECK(hash_of("{ \"a\" : [ 1 , 2 ] ,\n\t\"b\" : \"x\" }") == hash_of(R"({"a":[1,2],"b":"x"})"));
}

TEST_CASE("canonical JSON: numbers are normalised (1, 1.0, 1e0 are one number)") {
  const auto one = canon(R"({"n":1})");
  CHECK(one == R"({"n":1})");
  for (const char* spelling : {"1.0", "1e0", "1E0", "10e-1", "0.1e1", "1.000", "100e-2"})
    CHECK_MESSAGE(canon(fmt::format(R"({{"n":{}}})", spelling)) == one, spelling);
  CHECK(canon(R"({"n":-0.0})") == canon(R"({"n":0})"));
  CHECK(canon(R"({"n":-0})") == canon(R"({"n":0})"));
  CHECK(canon(R"({"n":1.5})") == canon(R"({"n":1.50})"));
  CHECK(canon(R"({"n":1.5})") == canon(R"({"n":15e-1})"));
  CHECK(canon(R"({"n":-2})") == canon(R"({"n":-2.0})"));
  CHECK(canon(R"({"n":0.1})") == canon(R"({"n":1e-1})"));
  CHECK(canon(R"({"n":123456789})") == canon(R"({"n":1.23456789e8})"));
  // Nested numbers too.
  CHECK(hash_of(R"({"a":{"b":[1,2.0,{"c":3e0}]}})") == hash_of(R"({"a":{"b":[1.0,2,{"c":3}]}})"));
  // Different numbers stay different.
  CHECK(hash_of(R"({"n":1})") != hash_of(R"({"n":1.1})"));
  CHECK(hash_of(R"({"n":1})") != hash_of(R"({"n":-1})"));
}

TEST_CASE("canonical JSON: large integral numbers are one number whatever their spelling") {
  // Integers of 15 digits and more (money in micro-units, ids, epoch microseconds) are still
  // integers when a source writes them with an exponent or a ".0".
  for (const char* a : {"1000000000000000", "2000000000000000", "9007199254740992",
                        "100000000000000000"}) {
    const auto as_int = canon(fmt::format(R"({{"n":{}}})", a));
    CHECK_MESSAGE(canon(fmt::format(R"({{"n":{}.0}})", a)) == as_int, (std::string(a) + ".0"));
  }
  CHECK(canon(R"({"n":1e15})") == canon(R"({"n":1000000000000000})"));
  CHECK(canon(R"({"n":2.5e15})") == canon(R"({"n":2500000000000000})"));
  CHECK(canon(R"({"n":1e17})") == canon(R"({"n":100000000000000000})"));
}

TEST_CASE("canonical JSON: strings compare by content, not by escaping") {
  CHECK(hash_of(R"({"s":"\u00e9"})") == hash_of("{\"s\":\"\xc3\xa9\"}"));
  CHECK(hash_of(R"({"s":"a\/b"})") == hash_of(R"({"s":"a/b"})"));
  CHECK(hash_of(R"({"s":"\u0041"})") == hash_of(R"({"s":"A"})"));
  CHECK(hash_of(R"({"s":"a"})") != hash_of(R"({"s":"A"})"));
  // Types matter: a string is not a number, a boolean is not a string.
  CHECK(hash_of(R"({"n":"1"})") != hash_of(R"({"n":1})"));
  CHECK(hash_of(R"({"b":true})") != hash_of(R"({"b":"true"})"));
  CHECK(hash_of(R"({"b":null})") != hash_of(R"({"b":false})"));
}

TEST_CASE("canonical JSON: raw and the volatile fields are left out, at the top level only") {
  const std::vector<std::string> vol = {"last_seen_at", "view_count"};
  const auto base = R"({"id":"1","name":"Ada"})";
  CHECK(canon(R"({"id":"1","name":"Ada","raw":{"anything":[1,2,3]}})", vol) == R"({"id":"1","name":"Ada"})");
  CHECK(hash_of(R"({"id":"1","name":"Ada","raw":{"x":1}})", vol) ==
        hash_of(R"({"id":"1","name":"Ada","raw":{"x":2}})", vol));
  CHECK(hash_of(R"({"id":"1","last_seen_at":"2024-01-01T00:00:00Z","name":"Ada","view_count":3})", vol) ==
        hash_of(base, vol));
  CHECK(hash_of(R"({"id":"1","last_seen_at":"2024-01-01T00:00:00Z","name":"Ada"})", vol) ==
        hash_of(R"({"id":"1","last_seen_at":"2025-06-01T00:00:00Z","name":"Ada"})", vol));
  // Without the volatile list, the field counts.
  CHECK(hash_of(R"({"id":"1","last_seen_at":"a","name":"Ada"})") !=
        hash_of(R"({"id":"1","last_seen_at":"b","name":"Ada"})"));
  // A nested member that happens to be called raw (or a volatile name) is content.
  CHECK(hash_of(R"({"id":"1","meta":{"raw":1}})", vol) != hash_of(R"({"id":"1","meta":{"raw":2}})", vol));
  CHECK(hash_of(R"({"id":"1","meta":{"view_count":1}})", vol) !=
        hash_of(R"({"id":"1","meta":{"view_count":2}})", vol));
  // A real change is seen next to raw and volatile noise.
  CHECK(hash_of(R"({"id":"1","name":"Ada","raw":{"x":1},"view_count":1})", vol) !=
        hash_of(R"({"id":"1","name":"Bob","raw":{"x":1},"view_count":1})", vol));
}

TEST_CASE("record_hash is the SHA-256 (hex) of the canonical record") {
  const auto text = R"({"b":[1.0,"x"],"a":{"d":1e0,"c":null},"raw":{"k":"v"}})";
  const auto h = hash_of(text);
  CHECK(h.size() == 64);
  CHECK(h.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(h == crypto::sha256_hex(canon(text)));
  CHECK(canon(text) == R"({"a":{"c":null,"d":1},"b":[1,"x"]})");
}

TEST_CASE("identity_record_hash equals the hash of the identity mapping's record, without parsing it") {
  // The identity mapping writes {"id": <id as text>, <members but id and raw>, "raw": <source>}.
  struct example {
    std::string source;
    std::string id;
    std::vector<std::string> volatile_fields;
  };
  const std::vector<example> examples = {
      {R"({"id":7,"name":"Ada","b":[1.0,{"z":1,"a":2}],"aa":null})", "7", {}},
      {R"({"zeta":1,"id":"x","alpha":"A","raw":{"ignored":true}})", "x", {}},
      {R"({"id":"3","updated_at":"2026-01-01T00:00:00Z","name":"Bo","view_count":4})", "3", {"view_count"}},
      {R"({"hub":1e0,"i":-0.0,"j":2.5,"id":"q"})", "q", {}},
      {R"({"id":"only"})", "only", {}},
  };
  for (const auto& ex : examples) {
    json::document src;
    REQUIRE(!json::document::parse(ex.source, src));
    simdjson::dom::object members = src.root().get_object().value_unsafe();
    std::string mapped = "{\"id\":";
    json::append_quoted(mapped, ex.id);
    for (auto [k, v] : members)
      if (k != "id" && k != "raw") {
        mapped += ",";
        json::append_quoted(mapped, k);
        mapped += ":" + json::to_string(v);
      }
    mapped += ",\"raw\":" + ex.source + "}";
    CAPTURE(mapped);
    CHECK(identity_record_hash(ex.id, members, ex.volatile_fields) == hash_of(mapped, ex.volatile_fields));
  }
  // It changes with a member, not with raw or a volatile field.
  json::document a, b;
  REQUIRE(!json::document::parse(R"({"id":"1","name":"Ada","view_count":1})", a));
  REQUIRE(!json::document::parse(R"({"id":"1","name":"Ada","view_count":2})", b));
  CHECK(identity_record_hash("1", a.root().get_object().value_unsafe(), {"view_count"}) ==
        identity_record_hash("1", b.root().get_object().value_unsafe(), {"view_count"}));
  CHECK(identity_record_hash("1", a.root().get_object().value_unsafe(), {}) !=
        identity_record_hash("1", b.root().get_object().value_unsafe(), {}));
}

// ---- the diff, as properties ----

namespace {

// A record in the model of a source. Two records are the same for change detection exactly
// when their `content` members are equal; `render` writes them in a different form every time
// (key order, number spelling, whitespace, raw, a volatile field), which must not matter.
struct model_record {
  std::string id;
  std::string name;
  long n = 0;
  std::vector<std::string> tags;
  int nested_b = 0;
  bool active = true;
  int version = 0;  // bumped by real updates (part of the content, like an updated_at)

  bool same_content(const model_record& o) const {
    return name == o.name && n == o.n && tags == o.tags && nested_b == o.nested_b &&
           active == o.active && version == o.version;
  }
};

const std::vector<std::string> volatile_fields = {"last_seen_at"};

using rng_t = std::mt19937_64;

std::size_t pick(rng_t& rng, std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); }
bool chance(rng_t& rng, double p) { return std::bernoulli_distribution(p)(rng); }

std::string spell_number(long n, rng_t& rng) {
  switch (pick(rng, 4)) {
    case 0: return std::to_string(n);
    case 1: return std::to_string(n) + ".0";
    case 2: return std::to_string(n) + "e0";
    default: return std::to_string(n * 10) + "e-1";
  }
}

std::string ws(rng_t& rng) { return chance(rng, 0.3) ? " " : (chance(rng, 0.1) ? "\n\t" : ""); }

// The record as a source might send it this time.
std::string render(const model_record& r, rng_t& rng) {
  std::vector<std::string> members;
  members.push_back(fmt::format(R"("id":"{}")", r.id));
  members.push_back(fmt::format(R"("name":{}"{}")", ws(rng), r.name));
  members.push_back(fmt::format(R"("n":{})", spell_number(r.n, rng)));
  std::string tags = "[";
  for (std::size_t i = 0; i < r.tags.size(); ++i) tags += (i ? "," : "") + ws(rng) + "\"" + r.tags[i] + "\"";
  members.push_back(R"("tags":)" + tags + "]");
  std::vector<std::string> nested = {fmt::format(R"("a":"fixed")"),
                                     fmt::format(R"("b":{})", spell_number(r.nested_b, rng))};
  std::shuffle(nested.begin(), nested.end(), rng);
  members.push_back(R"("nested":{)" + nested[0] + "," + nested[1] + "}");
  members.push_back(fmt::format(R"("active":{})", r.active ? "true" : "false"));
  members.push_back(fmt::format(R"("version":{})", spell_number(r.version, rng)));
  // Noise: a volatile field and raw change on every read.
  members.push_back(fmt::format(R"("last_seen_at":"t{}")", rng() % 1000000));
  members.push_back(fmt::format(R"("raw":{{"etag":"{}","n":{}}})", rng() % 1000000, rng() % 100));
  std::shuffle(members.begin(), members.end(), rng);
  std::string out = "{";
  for (std::size_t i = 0; i < members.size(); ++i) out += (i ? "," : "") + ws(rng) + members[i];
  return out + ws(rng) + "}";
}

observed_record observe(const model_record& r, rng_t& rng, bool tombstone = false) {
  auto text = render(r, rng);
  return {r.id, hash_of(text, volatile_fields), text, tombstone};
}

model_record random_record(const std::string& id, rng_t& rng) {
  model_record r;
  r.id = id;
  r.name = fmt::format("name-{}", rng() % 1000);
  r.n = static_cast<long>(rng() % 2000) - 1000;
  for (std::size_t i = 0, k = pick(rng, 4); i < k; ++i) r.tags.push_back(fmt::format("t{}", rng() % 10));
  r.nested_b = static_cast<int>(rng() % 50);
  r.active = chance(rng, 0.5);
  return r;
}

// A real change to one field (the content differs afterwards).
void mutate(model_record& r, rng_t& rng) {
  switch (pick(rng, 6)) {
    case 0: r.name += "!"; break;
    case 1: r.n += 1 + static_cast<long>(pick(rng, 5)); break;
    case 2: r.tags.push_back("new"); break;
    case 3: r.nested_b += 1; break;
    case 4: r.active = !r.active; break;
    default: r.version += 1; break;
  }
}

using source_state = std::map<std::string, model_record>;

struct truth {
  std::set<std::string> created, updated, deleted;
};

struct world {
  source_state before, after;
  truth expected;
};

// A random source state, then random creates, real updates, no-op rewrites and deletes.
world random_world(rng_t& rng, int& next_id) {
  world w;
  const auto n0 = pick(rng, 60);
  for (std::size_t i = 0; i < n0; ++i) {
    auto id = fmt::format("r{}", next_id++);
    w.before.emplace(id, random_record(id, rng));
  }
  w.after = w.before;
  const double p_delete = chance(rng, 0.2) ? 0.0 : 0.15;
  for (auto it = w.after.begin(); it != w.after.end();) {
    if (chance(rng, p_delete)) {
      w.expected.deleted.insert(it->first);
      it = w.after.erase(it);
      continue;
    }
    if (chance(rng, 0.25)) {
      mutate(it->second, rng);
      if (chance(rng, 0.3)) mutate(it->second, rng);
      // Two mutations may cancel out (a flag toggled twice): then it is no update.
      if (!it->second.same_content(w.before.at(it->first))) w.expected.updated.insert(it->first);
    }
    ++it;
  }
  for (std::size_t i = 0, k = pick(rng, 12); i < k; ++i) {
    auto id = fmt::format("r{}", next_id++);
    w.after.emplace(id, random_record(id, rng));
    w.expected.created.insert(id);
  }
  return w;
}

// The feed's snapshot as poll_feed keeps it: id -> hash, updated after every page.
struct snapshot {
  std::unordered_map<std::string, std::string> hashes;

  static snapshot of(const source_state& s, rng_t& rng) {
    snapshot out;
    for (const auto& [id, r] : s) out.hashes[id] = observe(r, rng).hash;
    return out;
  }
  std::unordered_map<std::string, std::string> known(const std::vector<observed_record>& page) const {
    std::unordered_map<std::string, std::string> k;
    for (const auto& o : page)
      if (auto it = hashes.find(o.id); it != hashes.end()) k.emplace(o.id, it->second);
    return k;
  }
  void apply(const std::vector<change>& cs) {
    for (const auto& c : cs) {
      if (c.kind == change_kind::deleted) hashes.erase(c.id);
      else hashes[c.id] = c.hash;
    }
  }
  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    for (const auto& [id, _] : hashes) out.push_back(id);
    return out;
  }
};

// Cuts the observations into pages of random sizes; sometimes a record shows up again at the
// start of the next page (the source's pages shifted while it was read).
std::vector<std::vector<observed_record>> paginate(std::vector<observed_record> all, rng_t& rng,
                                                   bool shifted_pages) {
  std::vector<std::vector<observed_record>> pages;
  std::size_t i = 0;
  while (i < all.size()) {
    auto size = 1 + pick(rng, 15);
    std::vector<observed_record> page(all.begin() + static_cast<long>(i),
                                      all.begin() + static_cast<long>(std::min(all.size(), i + size)));
    if (shifted_pages && !pages.empty() && chance(rng, 0.4)) page.insert(page.begin(), pages.back().back());
    pages.push_back(std::move(page));
    i += size;
  }
  return pages;
}

struct event_log {
  std::vector<change> all;
  std::map<std::string, int> count_by_id;

  void add(const std::vector<change>& cs) {
    for (const auto& c : cs) {
      all.push_back(c);
      ++count_by_id[c.id];
    }
  }
  std::set<std::string> of(change_kind k) const {
    std::set<std::string> out;
    for (const auto& c : all)
      if (c.kind == k) out.insert(c.id);
    return out;
  }
};

// Feeds pages through diff_observed the way poll_feed does (known hashes per page, then the
// snapshot is updated); returns the ids seen (tombstones excluded).
std::unordered_set<std::string> scan_pages(const std::vector<std::vector<observed_record>>& pages,
                                           snapshot& snap, event_log& events) {
  std::unordered_set<std::string> seen;
  for (const auto& page : pages) {
    auto found = diff_observed(page, snap.known(page));
    snap.apply(found);
    events.add(found);
    for (const auto& o : page)
      if (!o.tombstone) seen.insert(o.id);
  }
  return seen;
}

std::string join(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : ",") + x;
  return out;
}

void check_exactly(const event_log& events, const truth& t, const std::string& what) {
  INFO(what);
  INFO("created: ", join(events.of(change_kind::created)), " want ", join(t.created));
  INFO("updated: ", join(events.of(change_kind::updated)), " want ", join(t.updated));
  INFO("deleted: ", join(events.of(change_kind::deleted)), " want ", join(t.deleted));
  CHECK(events.of(change_kind::created) == t.created);
  CHECK(events.of(change_kind::updated) == t.updated);
  CHECK(events.of(change_kind::deleted) == t.deleted);
  for (const auto& [id, n] : events.count_by_id) CHECK_MESSAGE(n == 1, "one event per record: ", id);
}

std::vector<observed_record> observe_all(const source_state& s, rng_t& rng) {
  std::vector<observed_record> out;
  for (const auto& [id, r] : s) out.push_back(observe(r, rng));
  std::shuffle(out.begin(), out.end(), rng);
  return out;
}

}  // namespace

TEST_CASE("diff property: a complete scan yields exactly the true creates, updates and deletes") {
  int next_id = 0;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    CAPTURE(seed);
    rng_t rng(seed);
    auto w = random_world(rng, next_id);
    auto snap = snapshot::of(w.before, rng);
    event_log events;
    auto pages = paginate(observe_all(w.after, rng), rng, /*shifted_pages=*/chance(rng, 0.5));
    auto seen = scan_pages(pages, snap, events);
    // The scan was complete: whatever the snapshot has and the scan did not see is gone.
    std::vector<change> deletes;
    for (auto& id : absent_ids(snap.ids(), seen)) deletes.push_back({id, change_kind::deleted, "", ""});
    snap.apply(deletes);
    events.add(deletes);
    check_exactly(events, w.expected, "complete scan");
    // Every created/updated change carries the state that was read and its hash.
    for (const auto& c : events.all) {
      if (c.kind == change_kind::deleted) continue;
      CHECK(c.hash == hash_of(c.json, volatile_fields));
      CHECK(c.json.find("\"id\":\"" + c.id + "\"") != std::string::npos);
    }
    // Afterwards the snapshot is the source.
    std::set<std::string> snap_ids;
    for (const auto& [id, _] : snap.hashes) snap_ids.insert(id);
    std::set<std::string> source_ids;
    for (const auto& [id, _] : w.after) source_ids.insert(id);
    CHECK(snap_ids == source_ids);

    // A second complete scan of the unchanged source (re-rendered: other key order, number
    // spellings, raw and volatile values) finds nothing at all.
    event_log again;
    auto seen2 = scan_pages(paginate(observe_all(w.after, rng), rng, true), snap, again);
    CHECK(absent_ids(snap.ids(), seen2).empty());
    CHECK(again.all.empty());
  }
}

TEST_CASE("diff property: incremental polls with overlap yield exactly the changes; unchanged records nothing") {
  int next_id = 0;
  for (std::uint64_t seed = 1001; seed <= 1300; ++seed) {
    CAPTURE(seed);
    rng_t rng(seed);
    auto w = random_world(rng, next_id);
    auto snap = snapshot::of(w.before, rng);
    const bool tombstones = chance(rng, 0.5);
    std::vector<observed_record> observed;
    for (const auto& id : w.expected.created) observed.push_back(observe(w.after.at(id), rng));
    for (const auto& id : w.expected.updated) observed.push_back(observe(w.after.at(id), rng));
    // The overlap window re-sends some unchanged records.
    for (const auto& [id, r] : w.after)
      if (!w.expected.created.contains(id) && !w.expected.updated.contains(id) && chance(rng, 0.4))
        observed.push_back(observe(r, rng));
    truth expected = w.expected;
    if (tombstones) {
      for (const auto& id : w.expected.deleted) observed.push_back(observe(w.before.at(id), rng, true));
      // Records created and deleted between two polls: a tombstone of an id never seen.
      for (int i = 0, k = static_cast<int>(pick(rng, 3)); i < k; ++i) {
        auto id = fmt::format("r{}", next_id++);
        observed.push_back(observe(random_record(id, rng), rng, true));
      }
    } else {
      expected.deleted.clear();  // without tombstones an incremental poll cannot see deletes
    }
    std::shuffle(observed.begin(), observed.end(), rng);
    event_log events;
    scan_pages(paginate(observed, rng, chance(rng, 0.5)), snap, events);
    check_exactly(events, expected, tombstones ? "incremental with tombstones" : "incremental");
  }
}

TEST_CASE("diff property: a partial scan never yields a false event; completing it later yields each change once") {
  int next_id = 0;
  int partial_scans_with_missing_records = 0;
  for (std::uint64_t seed = 2001; seed <= 2300; ++seed) {
    CAPTURE(seed);
    rng_t rng(seed);
    auto w = random_world(rng, next_id);
    auto snap = snapshot::of(w.before, rng);
    auto pages = paginate(observe_all(w.after, rng), rng, chance(rng, 0.5));
    if (pages.size() < 2) continue;
    auto prefix_len = 1 + pick(rng, pages.size() - 1);
    std::vector<std::vector<observed_record>> prefix(pages.begin(), pages.begin() + static_cast<long>(prefix_len));
    event_log events;
    auto seen = scan_pages(prefix, snap, events);
    // Only true creates and updates; a partial scan concludes no delete.
    for (const auto& id : events.of(change_kind::created)) CHECK(w.expected.created.contains(id));
    for (const auto& id : events.of(change_kind::updated)) CHECK(w.expected.updated.contains(id));
    CHECK(events.of(change_kind::deleted).empty());
    // Why absent_ids must never run on a partial scan: it would name live records.
    std::size_t live_unseen = 0;
    for (const auto& id : absent_ids(snap.ids(), seen))
      if (w.after.contains(id)) ++live_unseen;
    if (live_unseen > 0) ++partial_scans_with_missing_records;

    // The next complete scan finds the rest: over both scans, every change exactly once.
    auto seen2 = scan_pages(paginate(observe_all(w.after, rng), rng, true), snap, events);
    std::vector<change> deletes;
    for (auto& id : absent_ids(snap.ids(), seen2)) deletes.push_back({id, change_kind::deleted, "", ""});
    snap.apply(deletes);
    events.add(deletes);
    check_exactly(events, w.expected, "partial then complete");
  }
  CHECK(partial_scans_with_missing_records > 50);  // the property was exercised
}

TEST_CASE("diff: an id observed twice counts once, with its last state") {
  auto a1 = observed_record{"a", "h1", R"({"id":"a","v":1})"};
  auto a2 = observed_record{"a", "h2", R"({"id":"a","v":2})"};
  SUBCASE("unknown: one create with the last state") {
    auto cs = diff_observed({a1, a2}, {});
    REQUIRE(cs.size() == 1);
    CHECK(cs[0].kind == change_kind::created);
    CHECK(cs[0].hash == "h2");
    CHECK(cs[0].json == a2.json);
  }
  SUBCASE("known with the last state's hash: nothing") { CHECK(diff_observed({a1, a2}, {{"a", "h2"}}).empty()); }
  SUBCASE("known with the first state's hash: one update to the last state") {
    auto cs = diff_observed({a1, a2}, {{"a", "h1"}});
    REQUIRE(cs.size() == 1);
    CHECK(cs[0].kind == change_kind::updated);
    CHECK(cs[0].hash == "h2");
  }
  SUBCASE("a record then its tombstone: deleted (when known), nothing when unknown") {
    auto t = observed_record{"a", "", R"({"id":"a"})", true};
    auto known = diff_observed({a1, t}, {{"a", "h0"}});
    REQUIRE(known.size() == 1);
    CHECK(known[0].kind == change_kind::deleted);
    CHECK(diff_observed({a1, t}, {}).empty());
  }
  SUBCASE("a tombstone then the record again: the record is back") {
    auto t = observed_record{"a", "", R"({"id":"a"})", true};
    auto cs = diff_observed({t, a2}, {{"a", "h1"}});
    REQUIRE(cs.size() == 1);
    CHECK(cs[0].kind == change_kind::updated);
  }
}

TEST_CASE("diff: changes come out in the order of the page") {
  std::vector<observed_record> page = {{"c", "h", "{}"}, {"a", "h", "{}"}, {"b", "h2", "{}"}};
  auto cs = diff_observed(page, {{"b", "h1"}});
  REQUIRE(cs.size() == 3);
  CHECK(cs[0].id == "c");
  CHECK(cs[1].id == "a");
  CHECK(cs[2].id == "b");
}

TEST_CASE("absent_ids: the snapshot ids a scan did not see, in snapshot order") {
  CHECK(absent_ids({"a", "b", "c", "d"}, {"b", "d", "x"}) == std::vector<std::string>{"a", "c"});
  CHECK(absent_ids({}, {"a"}).empty());
  CHECK(absent_ids({"a"}, {}) == std::vector<std::string>{"a"});
}

// ---- delete confirmation ----

namespace {
std::vector<std::string> ids(int from, int to) {
  std::vector<std::string> out;
  for (int i = from; i < to; ++i) out.push_back(fmt::format("r{}", i));
  return out;
}
std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }
}  // namespace

TEST_CASE("delete confirmation: one scan's absence only holds the delete, however few are absent") {
  auto d = confirm_deletes(ids(0, 1), {});
  CHECK(d.apply.empty());
  CHECK(d.hold == ids(0, 1));
  d = confirm_deletes({}, ids(0, 60));
  CHECK(d.apply.empty());
  CHECK(d.hold.empty());
}

TEST_CASE("delete confirmation: a second scan that agrees deletes") {
  auto first = confirm_deletes(ids(0, 60), {});
  CHECK(first.apply.empty());
  CHECK(as_set(first.hold) == as_set(ids(0, 60)));
  auto second = confirm_deletes(ids(0, 60), first.hold);
  CHECK(as_set(second.apply) == as_set(ids(0, 60)));
  CHECK(second.hold.empty());
}

TEST_CASE("delete confirmation: a second scan that disagrees deletes only what both scans found absent") {
  auto first = confirm_deletes(ids(0, 60), {});
  // The source flapped (or shifted its pages): scan 2 misses a different, overlapping set.
  auto second = confirm_deletes(ids(40, 100), first.hold);
  CHECK(as_set(second.apply) == as_set(ids(40, 60)));
  CHECK(as_set(second.hold) == as_set(ids(60, 100)));
  // Scan 3 sees everything again: nothing is deleted and nothing waits any more.
  auto third = confirm_deletes({}, second.hold);
  CHECK(third.apply.empty());
  CHECK(third.hold.empty());
}

TEST_CASE("delete confirmation property: apply and hold partition the absent ids; only ids absent twice apply") {
  for (std::uint64_t seed = 1; seed <= 500; ++seed) {
    CAPTURE(seed);
    rng_t rng(seed);
    const int n = 1 + static_cast<int>(pick(rng, 200));
    std::vector<std::string> absent, pending;
    for (int i = 0; i < n; ++i) {
      if (chance(rng, 0.5)) absent.push_back(fmt::format("r{}", i));
      if (chance(rng, 0.3)) pending.push_back(fmt::format("r{}", i));
    }
    auto d = confirm_deletes(absent, pending);
    std::vector<std::string> both = d.apply;
    both.insert(both.end(), d.hold.begin(), d.hold.end());
    std::sort(both.begin(), both.end());
    auto sorted_absent = absent;
    std::sort(sorted_absent.begin(), sorted_absent.end());
    CHECK(both == sorted_absent);
    auto p = as_set(pending);
    for (const auto& id : d.apply) CHECK(p.contains(id));
    for (const auto& id : d.hold) CHECK_FALSE(p.contains(id));
  }
}

// ---- full or incremental ----

namespace {
sources::integration_object object_with(bool incremental, bool tombstones) {
  sources::integration_object o;
  o.object_type = "crm_contact";
  o.path = "/contacts";
  if (incremental) o.incremental = sources::incremental_spec{"updated_since", "iso8601"};
  if (tombstones) o.tombstones = sources::tombstone_spec{"/archived", {}};
  return o;
}
changes::feed_state polled_feed(std::int64_t polls, bool has_deleted_webhook) {
  changes::feed_state f;
  f.id = 1;
  f.baseline_done = true;
  f.polls = polls;
  f.high_water = from_unix_millis(1'700'000'000'000);
  f.has_deleted_webhook = has_deleted_webhook;
  return f;
}
// Of `n` consecutive polls starting after `first` polls, how many are full scans.
int full_scans(const sources::integration_object& o, bool deleted_webhook, const scheduler::feed_poll_options& opt,
               int first, int n) {
  int full = 0;
  for (int p = first; p < first + n; ++p) full += scheduler::needs_full_scan(polled_feed(p, deleted_webhook), o, opt);
  return full;
}
}  // namespace

TEST_CASE("full scans: the baseline, a feed without a high water mark, and sources without an updated-since parameter") {
  scheduler::feed_poll_options opt;
  auto inc = object_with(true, false);
  auto baseline = polled_feed(5, false);
  baseline.baseline_done = false;
  CHECK(scheduler::needs_full_scan(baseline, inc, opt));
  auto no_high_water = polled_feed(5, false);
  no_high_water.high_water.reset();
  CHECK(scheduler::needs_full_scan(no_high_water, inc, opt));
  // No incremental parameter: every poll reads everything.
  CHECK(full_scans(object_with(false, false), false, opt, 1, 50) == 50);
  CHECK(full_scans(object_with(false, true), true, opt, 1, 50) == 50);
}

TEST_CASE("full scans: a feed with a deleted webhook and no tombstones scans fully at every poll by default") {
  scheduler::feed_poll_options opt;
  CHECK(full_scans(object_with(true, false), true, opt, 1, 40) == 40);
  // ... or every N-th poll when configured.
  opt.delete_scan_every = 4;
  CHECK(full_scans(object_with(true, false), true, opt, 1, 40) == 10);
}

TEST_CASE("full scans: other incremental feeds scan fully every full_scan_every-th poll") {
  scheduler::feed_poll_options opt;
  opt.full_scan_every = 12;
  auto inc = object_with(true, false);
  CHECK(full_scans(inc, false, opt, 1, 120) == 10);
  // Tombstones report deletes incrementally: a deleted webhook does not force full scans.
  CHECK(full_scans(object_with(true, true), true, opt, 1, 120) == 10);
  // Full scans are spread: never two in a row with N > 1.
  for (int p = 1; p < 60; ++p)
    CHECK_FALSE((scheduler::needs_full_scan(polled_feed(p, false), inc, opt) &&
                 scheduler::needs_full_scan(polled_feed(p + 1, false), inc, opt)));
  opt.full_scan_every = 1;
  CHECK(full_scans(inc, false, opt, 1, 30) == 30);
}

TEST_CASE("full scans: a feed holding deletes scans fully at its next poll, to confirm them") {
  scheduler::feed_poll_options opt;
  opt.full_scan_every = 12;
  auto inc = object_with(true, false);
  auto holding = polled_feed(1, false);
  CHECK_FALSE(scheduler::needs_full_scan(holding, inc, opt));
  holding.pending_deletes = {"r1"};
  CHECK(scheduler::needs_full_scan(holding, inc, opt));
}

// ---- the schedule ----

namespace {
using namespace std::chrono_literals;
const sys_time t0 = from_unix_millis(1'800'000'000'000);
}  // namespace

TEST_CASE("next_slot: the previous scheduled time plus the interval, never the finish time plus the interval") {
  CHECK(scheduler::next_slot(t0, 60s, t0 + 1s) == t0 + 60s);
  CHECK(scheduler::next_slot(t0, 60s, t0 + 59'999ms) == t0 + 60s);
  CHECK(scheduler::next_slot(t0, 3000ms, t0 + 2500ms) == t0 + 3000ms);
  // A run that started late still keeps the phase.
  CHECK(scheduler::next_slot(t0, 60s, t0 + 30s) == t0 + 60s);
}

TEST_CASE("next_slot: missed slots are skipped, the phase is kept, and the slot is in the future") {
  CHECK(scheduler::next_slot(t0, 60s, t0 + 60s + 1ms) == t0 + 120s);
  CHECK(scheduler::next_slot(t0, 60s, t0 + 10min + 5s) == t0 + 11min);
  // Exactly at a slot: that slot is now, not after now: the next one.
  CHECK(scheduler::next_slot(t0, 60s, t0 + 60s) == t0 + 120s);
  CHECK(scheduler::next_slot(t0, 60s, t0 + 3min) == t0 + 4min);
}

TEST_CASE("next_slot property: strictly after now, on the grid, and the first such slot") {
  rng_t rng(7);
  for (int i = 0; i < 5000; ++i) {
    auto interval = std::chrono::milliseconds(1 + static_cast<long>(pick(rng, 3'600'000)));
    auto scheduled = t0 + std::chrono::milliseconds(static_cast<long>(pick(rng, 1'000'000'000)));
    auto now = scheduled + std::chrono::milliseconds(static_cast<long>(pick(rng, 50'000'000))) -
               std::chrono::milliseconds(static_cast<long>(pick(rng, 1000)));
    auto next = scheduler::next_slot(scheduled, interval, now);
    CAPTURE(interval.count());
    CAPTURE(to_unix_millis(scheduled));
    CAPTURE(to_unix_millis(now));
    CHECK(next > now);
    CHECK(next > scheduled);
    CHECK((next - scheduled) % interval == std::chrono::milliseconds(0));
    // The first grid point after now (or the very next slot when now is before it).
    CHECK((next - interval <= now || next - interval == scheduled));
  }
}

TEST_CASE("schedule property: consecutive runs never drift and never overlap, whatever the run durations") {
  for (std::uint64_t seed = 1; seed <= 50; ++seed) {
    CAPTURE(seed);
    rng_t rng(seed);
    const auto interval = std::chrono::milliseconds(1000 + static_cast<long>(pick(rng, 120'000)));
    sys_time slot = t0;
    sys_time previous_finish = t0 - 1ms;
    for (int run = 0; run < 200; ++run) {
      // The run starts at (or a little after) its slot and takes a random time, sometimes
      // longer than several intervals.
      auto start = std::max(slot, previous_finish) + std::chrono::milliseconds(static_cast<long>(pick(rng, 200)));
      auto duration = chance(rng, 0.1) ? interval * static_cast<long>(1 + pick(rng, 4))
                                       : std::chrono::milliseconds(static_cast<long>(pick(rng, 500)));
      auto finish = start + duration;
      auto next = scheduler::next_slot(slot, interval, finish);
      CHECK(next > finish);                                       // never overlaps the run
      CHECK((next - t0) % interval == std::chrono::milliseconds(0));  // never drifts
      CHECK(next - interval <= finish);                           // skips only missed slots
      previous_finish = finish;
      slot = next;
    }
  }
}

TEST_CASE("next_slot: a zero interval means now") {
  CHECK(scheduler::next_slot(t0, 0ms, t0 + 5s) == t0 + 5s);
}
