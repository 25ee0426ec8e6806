#pragma once
// hookd's configuration: built-in defaults, then a YAML file (--config), then systemd
// credentials ($CREDENTIALS_DIRECTORY), then HOOKD_<KEY> environment variables.
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace hookd {

// A configuration problem; the message names the key. hookd exits with code 2.
struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct config {
  std::string listen = "127.0.0.1:8080";      // host:port; port 0 picks a free port
  std::string database_url;                   // empty: the embedded PostgreSQL under data_dir
  std::filesystem::path data_dir;             // default: /var/lib/hookd as root, else ~/.local/share/hookd
  std::string api_key;                        // bootstrap workspace key (secret)
  std::string workspace_secret;               // bootstrap workspace signing secret (secret)
  std::string notification_url;               // bootstrap workspace: WEBHOOK_UNHEALTHY / WEBHOOK_PAUSED events
  std::string encryption_key;                 // base64 of 32 bytes (secret); default: <data_dir>/encryption.key
  double min_interval_seconds = 60;
  int max_page_limit = 1000;
  std::string allow_private_destinations;     // "" (none), "true", or a comma-separated CIDR list
  std::string allow_private_sources;          // the same for sources (api_url, token_url, links)
  std::string log_format = "text";            // text | json
  std::string log_level = "info";             // trace | debug | info | warn | error | critical | off
  std::vector<double> retry_schedule;         // seconds; default Fibonacci minutes, 20 retries
  int threads = 2;                            // event-loop threads
  int db_pool_size = 4;                       // API database threads, one connection each
  int db_scheduler_pool_size = 4;             // the scheduler's (polls, runs) database threads
  int db_delivery_pool_size = 3;              // the delivery engine's database threads
  int delivery_lanes = 512;                   // webhooks delivered to at once per instance
  int delivery_prepare_ahead = 32;            // POSTs of a webhook recorded per commit
  int db_connect_timeout_seconds = 5;
  int db_statement_timeout_ms = 30000;
  std::size_t max_body_bytes = 1024 * 1024;   // request bodies over this get 413
  int request_timeout_seconds = 30;           // per inbound HTTP request, first byte to last
  int idle_timeout_seconds = 60;              // an inbound connection waiting for a request
  int max_connections = 1024;                 // open inbound connections
  std::string postgres_bin_dir;               // embedded PostgreSQL binaries; default: newest /usr/lib/postgresql/*/bin
  std::string ca_file;                        // extra trusted CA certificates (PEM) for outbound TLS
  int source_timeout_seconds = 30;            // per request to a source
  std::string integrations_dir;
  // Scheduling and change detection
  std::string instance_id;                    // lease owner name; default: host name + pid
  int lease_seconds = 60;                     // a dead instance's webhooks run elsewhere after this
  int feed_freshness_seconds = 30;            // webhooks of one feed due within this share one poll
  int scheduler_batch = 100;                  // webhooks claimed per query
  int max_concurrent_runs = 2048;
  int full_scan_every = 12;                   // incremental feeds: every N-th poll is a full scan
  int delete_scan_every = 1;                  // feeds with a deleted webhook and no tombstones
  int incremental_overlap_seconds = 300;      // incremental polls re-read this much before the high water
  int drain_seconds = 30;                     // SIGTERM: time for runs in flight to finish
  int log_retention_hours = 168;              // change log entries every webhook has passed
  int history_retention_hours = 168;          // run records and delivery attempts: kept this long
  int history_per_webhook = 100;              // ... and at most this many of each per webhook
  int feed_grace_hours = 24;                  // a feed without webhooks is removed after this
};

// Where the configuration comes from; tests pass their own environment.
struct config_sources {
  std::optional<std::filesystem::path> file;       // --config
  std::map<std::string, std::string> environment;  // e.g. from environ
  std::optional<std::filesystem::path> credentials_directory;  // $CREDENTIALS_DIRECTORY
};

// Throws config_error naming the key for an unknown key (in the file or a HOOKD_* variable),
// a value of the wrong type or a value out of range.
config load_config(const config_sources& sources);

// The process environment as a map (for config_sources::environment).
std::map<std::string, std::string> process_environment();

// The default retry schedule: 20 delays following the Fibonacci sequence in minutes.
std::vector<double> default_retry_schedule();

}  // namespace hookd
