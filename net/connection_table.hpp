#pragma once
// The HTTP server's open connections, at most max_connections of them. A new connection past
// the bound closes the one that has waited longest for its next request: idle on keep-alive,
// or still sending its request, as a slow or hostile client's would be. A request being
// handled is never cut short, so when every connection has one the new connection is refused.
// Either way the file descriptors and memory held for clients stay bounded.
#include <chrono>
#include <cstddef>
#include <functional>
#include <list>
#include <memory>
#include <mutex>

#include <boost/asio/any_io_executor.hpp>

namespace hookd::net {

class connection_table {
public:
  // One connection's place. Its session owns it; the table only closes it to make room.
  class slot {
  public:
    explicit slot(boost::asio::any_io_executor ex) : executor_(std::move(ex)) {}
    // Called on the connection's executor (a strand) when it is closed to make room; set and
    // cleared only from that executor.
    void on_close(std::function<void()> f) { close_ = std::move(f); }

  private:
    friend class connection_table;
    boost::asio::any_io_executor executor_;
    std::function<void()> close_;
    std::list<std::shared_ptr<slot>>::iterator place_;  // in waiting_, while waiting
    bool waiting_ = false;
    bool evicted_ = false;
  };
  using slot_ptr = std::shared_ptr<slot>;

  explicit connection_table(std::size_t max_connections,
                            std::chrono::seconds log_interval = std::chrono::seconds(10));
  connection_table(const connection_table&) = delete;
  connection_table& operator=(const connection_table&) = delete;

  // A slot for a new connection whose I/O runs on `ex` (waiting for its first request), or
  // nullptr when it must be refused.
  slot_ptr admit(boost::asio::any_io_executor ex);
  // The connection waits for its next request (or for the rest of one).
  void waiting(const slot_ptr& s);
  // A whole request has arrived and is being handled.
  void busy(const slot_ptr& s);
  // The connection is closed.
  void release(const slot_ptr& s);
  // Closes the connection that has waited longest for a request, when the process is out of
  // file descriptors below max_connections; false when none is waiting.
  bool shed_one();

  std::size_t size() const;
  std::size_t max_connections() const { return max_; }

  // Under pressure every new connection would be worth a line: the first one of a spell is
  // logged at once, the rest are counted, and report() (called every log_interval by the
  // server) logs the counts since the last report.
  void report();
  std::chrono::seconds log_interval() const { return log_interval_; }

private:
  struct pressure {
    std::size_t closed = 0;
    std::size_t refused = 0;
  };
  void note_pressure(bool refused);
  void unlink(slot& s);
  slot_ptr evict_longest_waiting();  // under mutex_
  static void close_later(slot_ptr victim);

  const std::size_t max_;
  const std::chrono::seconds log_interval_;
  mutable std::mutex mutex_;
  std::size_t open_ = 0;
  std::list<slot_ptr> waiting_;  // front: the one waiting longest
  pressure since_report_;
  bool quiet_ = true;  // no pressure since the last report
};

}  // namespace hookd::net
