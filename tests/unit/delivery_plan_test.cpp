// The delivery engine's plan: a lane's next POSTs, prepared ahead from one read, must be the
// POSTs that one-at-a-time delivery would have sent (same records, same windows, same
// cursor after each), and must never let the cursor pass an unacknowledged delivery.
#include <doctest/doctest.h>

#include <random>
#include <set>

#include <fmt/format.h>

#include "delivery/batch.hpp"
#include "scheduler/delivery_engine.hpp"

using namespace hookd;
using hookd::delivery::log_entry;

namespace {

storage::lane_input lane(std::vector<log_entry> unread, std::string event, int page, bool more = false) {
  storage::lane_input in;
  in.webhook_id = "w1";
  webhook h;
  h.id = "w1";
  h.connection_id = "c1";
  h.object_type = "crm_contact";
  h.event = std::move(event);
  h.page_max_limit = page;
  in.hook = h;
  in.leased = true;
  in.target.feed_id = 1;
  in.unread = std::move(unread);
  in.unread_more = more;
  return in;
}

std::string data_of(const std::string& body) {
  auto start = std::string_view("{\"data\":").size();
  auto end = body.find(",\"webhook\":");
  REQUIRE(end != std::string::npos);
  return body.substr(start, end - start);
}

std::vector<log_entry> random_log(std::mt19937& rng, int n, int ids) {
  const char* kinds[] = {"created", "updated", "deleted"};
  std::vector<log_entry> out;
  for (int i = 1; i <= n; ++i) {
    auto id = std::to_string(rng() % ids);
    auto kind = kinds[rng() % 3];
    out.push_back({i, id, kind, fmt::format(R"({{"id":"{}","v":{},"raw":{{"x":1}}}})", id, i)});
  }
  return out;
}

}  // namespace

TEST_CASE("prepared ahead, a lane's POSTs are those one-at-a-time delivery sends") {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    auto entries = random_log(rng, 1 + static_cast<int>(rng() % 60), 1 + static_cast<int>(rng() % 12));
    const std::string event = round % 3 == 0 ? "created" : round % 3 == 1 ? "updated" : "deleted";
    const int page = 1 + static_cast<int>(rng() % 4);
    // One at a time, as a reader that re-reads the log after each acknowledged POST.
    std::vector<std::pair<std::string, std::int64_t>> expected;
    std::int64_t cursor = 0;
    for (;;) {
      std::vector<log_entry> rest;
      for (const auto& e : entries)
        if (e.seq > cursor) rest.push_back(e);
      if (rest.empty()) break;
      auto b = delivery::select_batch(rest, event, {}, "", page);
      cursor = b.seq_to;
      if (b.count) expected.emplace_back(b.data, b.seq_to);
    }
    auto plan = scheduler::plan_deliveries(lane(entries, event, page), "whsec_c2VjcmV0", 1000);
    REQUIRE(plan.deliveries.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i) {
      CHECK(data_of(plan.deliveries[i].body) == expected[i].first);
      CHECK(plan.deliveries[i].seq_to == expected[i].second);
      CHECK(plan.deliveries[i].type == "VIRTUAL");
    }
    std::set<std::string> ids;
    for (const auto& d : plan.deliveries) ids.insert(d.id);
    CHECK(ids.size() == plan.deliveries.size());  // one webhook-id per body
    if (!plan.deliveries.empty()) {
      CHECK_FALSE(plan.skip_to);  // the cursor never passes an unacknowledged delivery
    } else {
      REQUIRE(plan.skip_to);
      CHECK(*plan.skip_to == entries.back().seq);
    }
  }
}

TEST_CASE("a plan holds at most `ahead` POSTs, and waits for a whole window when the read was cut") {
  std::vector<log_entry> entries;
  for (int i = 1; i <= 9; ++i)
    entries.push_back({i, std::to_string(i), "created", fmt::format(R"({{"id":"{}"}})", i)});
  auto two = scheduler::plan_deliveries(lane(entries, "created", 2), "s", 2);
  REQUIRE(two.deliveries.size() == 2);
  CHECK(two.deliveries[1].seq_to == 4);
  // 9 entries read, more in the log: the 5th window ([9]) is not full, so it waits.
  auto cut = scheduler::plan_deliveries(lane(entries, "created", 2, true), "s", 100);
  REQUIRE(cut.deliveries.size() == 4);
  CHECK(cut.deliveries.back().seq_to == 8);
  // The whole log: the last window goes out.
  auto all = scheduler::plan_deliveries(lane(entries, "created", 2, false), "s", 100);
  REQUIRE(all.deliveries.size() == 5);
  CHECK(data_of(all.deliveries.back().body) == R"([{"id":"9"}])");
  // Nothing of the event: no POST, the cursor may pass.
  auto none = scheduler::plan_deliveries(lane(entries, "deleted", 2), "s", 100);
  CHECK(none.deliveries.empty());
  REQUIRE(none.skip_to);
  CHECK(*none.skip_to == 9);
}

TEST_CASE("the initial sync is planned page by page from the snapshot, the last page INITIAL-COMPLETE") {
  auto in = lane({}, "created", 2);
  in.target.initial_sync_done = false;
  in.target.feed_ready = true;
  in.snapshot_head = 41;
  for (int i = 1; i <= 5; ++i)
    in.snapshot.push_back({0, std::to_string(i), "created", fmt::format(R"({{"id":"{}"}})", i)});
  auto plan = scheduler::plan_deliveries(in, "s", 10);
  REQUIRE(plan.deliveries.size() == 3);
  CHECK(plan.deliveries[0].type == "INITIAL-PARTIAL");
  CHECK(plan.deliveries[1].type == "INITIAL-PARTIAL");
  CHECK(plan.deliveries[2].type == "INITIAL-COMPLETE");
  CHECK(plan.deliveries[0].initial_after == "2");
  CHECK(plan.deliveries[1].initial_after == "4");
  CHECK(plan.deliveries[2].initial_after == "5");
  CHECK(data_of(plan.deliveries[2].body) == R"([{"id":"5"}])");
  for (const auto& d : plan.deliveries) {
    CHECK(d.seq_to == 41);  // the first page moves the cursor to the head read with it
    CHECK(d.snapshot_head == 41);
  }
  // The read was cut after 4 records: two pages now, the rest (and COMPLETE) after the next read.
  in.snapshot.resize(4);
  in.snapshot_more = true;
  auto cut = scheduler::plan_deliveries(in, "s", 10);
  REQUIRE(cut.deliveries.size() == 1);
  CHECK(cut.deliveries[0].type == "INITIAL-PARTIAL");
  // No records at all: one empty INITIAL-COMPLETE.
  in.snapshot.clear();
  in.snapshot_more = false;
  auto empty = scheduler::plan_deliveries(in, "s", 10);
  REQUIRE(empty.deliveries.size() == 1);
  CHECK(empty.deliveries[0].type == "INITIAL-COMPLETE");
  CHECK(data_of(empty.deliveries[0].body) == "[]");
  // The feed's baseline is not complete: nothing yet.
  in.target.feed_ready = false;
  CHECK(scheduler::plan_deliveries(in, "s", 10).deliveries.empty());
}
