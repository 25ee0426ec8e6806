#pragma once
// The embedded default database: a private PostgreSQL cluster under the data directory,
// reachable only through a unix socket (no TCP port), started and stopped by hookd.
#include <filesystem>
#include <memory>
#include <string>

namespace hookd {

class embedded_postgres {
public:
  struct options {
    std::filesystem::path data_dir;  // the cluster lives in <data_dir>/postgres
    std::string bin_dir;             // PostgreSQL binaries; empty: newest /usr/lib/postgresql/*/bin
  };

  // Runs initdb on first use, then starts the server (reusing one already running on this
  // cluster, e.g. after hookd was killed). As root, the cluster belongs to and runs as an
  // unprivileged system user. Throws std::runtime_error with a clear message on failure.
  static std::unique_ptr<embedded_postgres> start(const options& opts);

  ~embedded_postgres();  // stops the server
  embedded_postgres(const embedded_postgres&) = delete;
  embedded_postgres& operator=(const embedded_postgres&) = delete;

  // A libpq connection URL for the cluster's socket.
  const std::string& url() const { return url_; }
  // Stops the server (fast shutdown); idempotent.
  void stop();

private:
  embedded_postgres() = default;
  std::filesystem::path cluster_dir_;
  std::string bin_dir_;
  std::string run_as_;  // empty: the current user
  std::string url_;
  bool running_ = false;
};

}  // namespace hookd
