#pragma once
// One poll of a feed: scan the source (full or incremental), diff each page against the
// snapshot, write the changes, and after a complete full scan detect deletes (confirmed by a
// second complete full scan). A baseline poll (a new feed) fills the snapshot without events.
#include <chrono>
#include <functional>
#include <optional>

#include <boost/asio/awaitable.hpp>

#include "changes/feed_repository.hpp"
#include "sources/poller.hpp"

namespace hookd::scheduler {

struct feed_poll_options {
  int full_scan_every = 12;               // feeds without a deleted webhook: every N-th poll is full
  int delete_scan_every = 1;              // feeds with a deleted webhook: every N-th poll is full
  std::chrono::seconds overlap{300};      // incremental polls ask for changes since high water - overlap
  // When this poll started: the high water mark never passes it, so one record with an
  // updated_at in the future cannot freeze incremental polls.
  std::optional<sys_time> started;
};

// Whether this poll must read every record.
bool needs_full_scan(const changes::feed_state& feed, const sources::integration_object& obj,
                     const feed_poll_options& options);

// `changes_logged` is called after each page whose changes were committed to the log, so that
// delivery starts while the rest of the scan goes on.
boost::asio::awaitable<changes::poll_outcome> poll_feed(sources::poller& poller,
                                                        changes::feed_repository& repo,
                                                        const sources::integration& definition,
                                                        const sources::integration_object& object,
                                                        std::string auth_json,
                                                        changes::feed_state feed,
                                                        feed_poll_options options,
                                                        std::function<void()> changes_logged = {});

}  // namespace hookd::scheduler
