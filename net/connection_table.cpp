#include "net/connection_table.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

namespace hookd::net {

connection_table::connection_table(std::size_t max_connections, std::chrono::seconds log_interval)
    : max_(max_connections), log_interval_(log_interval) {}

connection_table::slot_ptr connection_table::admit(boost::asio::any_io_executor ex) {
  auto s = std::make_shared<slot>(std::move(ex));
  slot_ptr victim;
  {
    std::lock_guard lock(mutex_);
    if (open_ >= max_) {
      victim = evict_longest_waiting();
      note_pressure(!victim);
      if (!victim) return nullptr;
    }
    ++open_;
    s->place_ = waiting_.insert(waiting_.end(), s);
    s->waiting_ = true;
  }
  close_later(std::move(victim));
  return s;
}

bool connection_table::shed_one() {
  slot_ptr victim;
  {
    std::lock_guard lock(mutex_);
    victim = evict_longest_waiting();
  }
  if (!victim) return false;
  close_later(std::move(victim));
  return true;
}

connection_table::slot_ptr connection_table::evict_longest_waiting() {
  if (waiting_.empty()) return nullptr;
  auto victim = waiting_.front();
  unlink(*victim);
  victim->evicted_ = true;
  --open_;
  return victim;
}

// The victim's stream is closed on its own strand: its session may be running elsewhere.
void connection_table::close_later(slot_ptr victim) {
  if (!victim) return;
  auto executor = victim->executor_;
  boost::asio::post(executor, [victim = std::move(victim)] {
    if (victim->close_) victim->close_();
  });
}

void connection_table::waiting(const slot_ptr& s) {
  std::lock_guard lock(mutex_);
  if (s->evicted_) return;
  unlink(*s);
  s->place_ = waiting_.insert(waiting_.end(), s);
  s->waiting_ = true;
}

void connection_table::busy(const slot_ptr& s) {
  std::lock_guard lock(mutex_);
  unlink(*s);
}

void connection_table::release(const slot_ptr& s) {
  std::lock_guard lock(mutex_);
  unlink(*s);
  if (!s->evicted_) --open_;
  s->evicted_ = true;  // a late waiting() must not put it back
}

std::size_t connection_table::size() const {
  std::lock_guard lock(mutex_);
  return open_;
}

void connection_table::unlink(slot& s) {
  if (!s.waiting_) return;
  waiting_.erase(s.place_);
  s.waiting_ = false;
}

void connection_table::note_pressure(bool refused) {
  ++(refused ? since_report_.refused : since_report_.closed);
  if (!quiet_) return;
  quiet_ = false;
  spdlog::warn("connection limit reached (max_connections {}): {}; counts follow every {} s "
               "while it lasts",
               max_,
               refused ? "refusing a new connection, every connection has a request in progress"
                       : "closing the connection that has waited longest for a request",
               log_interval_.count());
}

void connection_table::report() {
  pressure p;
  {
    std::lock_guard lock(mutex_);
    p = since_report_;
    since_report_ = {};
    quiet_ = p.closed == 0 && p.refused == 0;
  }
  if (p.closed == 0 && p.refused == 0) return;
  spdlog::warn("connection limit (max_connections {}) in the last {} s: closed {} connections "
               "waiting for a request, refused {} new ones",
               max_, log_interval_.count(), p.closed, p.refused);
}

}  // namespace hookd::net
