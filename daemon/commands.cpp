#include "daemon/commands.hpp"

#include <fstream>
#include <iostream>
#include <thread>

#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include "core/crypto.hpp"
#include "daemon/api.hpp"
#include "daemon/connection_health.hpp"
#include "daemon/embedded_postgres.hpp"
#include "core/logging.hpp"
#include "net/address_policy.hpp"
#include "net/http_client.hpp"
#include "storage/delivery_store.hpp"
#include "scheduler/delivery_engine.hpp"
#include "scheduler/scheduler.hpp"
#include "sources/poller.hpp"
#include "storage/feed_store.hpp"
#include "storage/migrations.hpp"

namespace hookd {
namespace asio = boost::asio;

namespace {

struct database {
  std::unique_ptr<embedded_postgres> embedded;
  std::unique_ptr<storage::executor> executor;
  std::string url;  // the server's URL (without the executor's timeout options)
};

void ensure_data_dir(const config& cfg) {
  std::filesystem::create_directories(cfg.data_dir);
}

database open_database(const config& cfg) {
  database db;
  std::string url = cfg.database_url;
  if (url.empty()) {
    ensure_data_dir(cfg);
    db.embedded = embedded_postgres::start({cfg.data_dir, cfg.postgres_bin_dir});
    url = db.embedded->url();
  }
  db.url = url;
  db.executor = std::make_unique<storage::executor>(storage::executor_options{
      url, cfg.db_pool_size, cfg.db_connect_timeout_seconds, cfg.db_statement_timeout_ms});
  db.executor->run_sync([](pqxx::connection& c) { storage::apply_migrations(c); });
  return db;
}

// The key that seals secrets at rest: from the configuration, else a key file in the data
// directory (created on first start, readable by its owner only).
crypto::cipher load_cipher(const config& cfg) {
  if (!cfg.encryption_key.empty()) return crypto::cipher(*crypto::base64_decode(cfg.encryption_key));
  ensure_data_dir(cfg);
  auto path = cfg.data_dir / "encryption.key";
  if (!std::filesystem::exists(path)) {
    auto old_mask = ::umask(077);
    std::ofstream(path) << crypto::base64_encode(crypto::random_bytes(32)) << "\n";
    ::umask(old_mask);
    spdlog::info("generated the encryption key {}; every instance sharing the database needs "
                 "the same key (encryption_key)", path.string());
  }
  std::string text;
  std::ifstream(path) >> text;
  auto key = crypto::base64_decode(text);
  if (!key || key->size() != 32)
    throw std::runtime_error(path.string() + " does not hold a base64 32-byte key");
  return crypto::cipher(*key);
}

std::filesystem::path integrations_dir(const config& cfg) {
  if (!cfg.integrations_dir.empty()) return cfg.integrations_dir;
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::vector<std::filesystem::path> candidates;
  if (!ec) {
    candidates.push_back(exe.parent_path().parent_path() / "integrations");
    candidates.push_back(exe.parent_path() / "integrations");
  }
  candidates.push_back("/usr/share/hookd/integrations");
  for (const auto& c : candidates)
    if (std::filesystem::is_directory(c, ec)) return c;
  return candidates.front();
}

void print_bootstrap(const storage::store::bootstrap_result& b) {
  if (!b.generated_api_key) return;
  std::cout << "hookd created the bootstrap workspace; these credentials are shown only once:\n"
            << "  api_key: " << *b.generated_api_key << "\n";
  if (b.generated_secret) std::cout << "  workspace_secret: " << *b.generated_secret << "\n";
  std::cout << std::flush;
}

net::client_options client_options_for(const config& cfg);
net::client_options source_client_options(const config& cfg, const net::address_policy& policy);

asio::awaitable<void> drain_and_stop(asio::io_context& ioc, net::http_server& server,
                                     scheduler::scheduler& sched, scheduler::delivery_engine& engine,
                                     std::chrono::seconds deadline) {
  // Both stop at once: the engine's lanes stop before their next POST while the runs in
  // flight finish; together they take at most `deadline`.
  auto until = std::chrono::steady_clock::now() + deadline;
  engine.request_stop();
  co_await sched.stop(deadline);
  auto left = std::chrono::duration_cast<std::chrono::seconds>(until - std::chrono::steady_clock::now());
  co_await engine.stop(std::max(left, std::chrono::seconds(0)));
  asio::steady_timer timer(ioc);
  until = std::chrono::steady_clock::now() + deadline;
  while (server.in_flight() > 0 && std::chrono::steady_clock::now() < until) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(asio::use_awaitable);
  }
  ioc.stop();
}

std::string default_instance_id() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return fmt::format("{}-{}-{}", host, ::getpid(), crypto::random_id().substr(0, 6));
}

scheduler::scheduler_options scheduler_options_for(const config& cfg) {
  scheduler::scheduler_options o;
  o.owner = cfg.instance_id.empty() ? default_instance_id() : cfg.instance_id;
  o.batch = cfg.scheduler_batch;
  o.max_concurrent_runs = cfg.max_concurrent_runs;
  o.lease = std::chrono::seconds(cfg.lease_seconds);
  o.freshness = std::chrono::seconds(cfg.feed_freshness_seconds);
  o.feed.full_scan_every = cfg.full_scan_every;
  o.feed.delete_scan_every = cfg.delete_scan_every;
  o.feed.overlap = std::chrono::seconds(cfg.incremental_overlap_seconds);
  return o;
}

// Keeps the tables bounded: the change log, run records and delivery attempts, unused feeds.
// Every five minutes, in small batches (short transactions, no long locks).
asio::awaitable<void> prune_loop(storage::feed_store& feeds, const config& cfg) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    try {
      auto log = co_await feeds.prune_log(std::chrono::hours(cfg.log_retention_hours));
      auto history = co_await feeds.prune_history(std::chrono::hours(cfg.history_retention_hours),
                                                  cfg.history_per_webhook);
      auto unused = co_await feeds.prune_feeds(std::chrono::hours(cfg.feed_grace_hours));
      if (log + history + unused > 0)
        spdlog::info("pruned {} change log entries, {} run records and delivery attempts, {} unused feeds", log,
                     history, unused);
    } catch (const std::exception& e) {
      spdlog::warn("pruning failed: {}", e.what());
    }
    timer.expires_after(std::chrono::minutes(5));
    co_await timer.async_wait(asio::use_awaitable);
  }
}

void log_exception(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("background task failed: {}", ex.what());
  }
}

asio::awaitable<void> watchdog_loop(asio::io_context& ioc, std::uint64_t usec) {
  asio::steady_timer timer(ioc);
  for (;;) {
    sd_notify(0, "WATCHDOG=1");
    timer.expires_after(std::chrono::microseconds(usec / 2));
    co_await timer.async_wait(asio::use_awaitable);
  }
}

// Each inbound connection holds a descriptor; so do the delivery lanes' connections, the
// database pools and the log. The soft limit (often 1024) is raised to the hard one, as
// servers commonly do; a hard limit below what the configuration needs is worth a warning,
// since accepts then fail (and pause) before max_connections is reached.
void raise_descriptor_limit(const config& cfg) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  auto needed = static_cast<rlim_t>(cfg.max_connections) + static_cast<rlim_t>(cfg.delivery_lanes) +
                static_cast<rlim_t>(cfg.db_pool_size + cfg.db_scheduler_pool_size +
                                    cfg.db_delivery_pool_size) +
                64;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed)
    spdlog::warn("the open file limit is {} but max_connections {} and delivery_lanes {} need "
                 "about {}: raise LimitNOFILE= (ulimit -n) or lower max_connections",
                 limit.rlim_cur, cfg.max_connections, cfg.delivery_lanes, needed);
}

void log_request(const net::request_log_entry& e) {
  log_event(spdlog::level::info, "request",
            {{"method", e.method},
             {"path", e.path},
             {"status", e.status},
             {"latency_ms", static_cast<double>(e.latency.count()) / 1000.0},
             {"remote", e.remote}});
}

}  // namespace

int run_serve(const config& cfg) {
  setup_logging(cfg.log_format == "json" ? log_format::json : log_format::text, cfg.log_level);
  auto registry = sources::integration_registry::load(integrations_dir(cfg));
  spdlog::info("loaded {} integration definitions", registry.all().size());
  auto cipher = load_cipher(cfg);
  auto db = open_database(cfg);
  system_clock clk;
  storage::store store(*db.executor, std::move(cipher), clk);
  print_bootstrap(store.bootstrap_workspace(cfg.api_key, cfg.workspace_secret, cfg.notification_url));

  asio::io_context ioc(cfg.threads);
  api_options options;
  options.limits.min_interval_minutes = cfg.min_interval_seconds / 60.0;
  options.limits.max_page_limit = cfg.max_page_limit;
  options.default_interval_minutes = std::max(60.0, options.limits.min_interval_minutes);
  options.destinations = net::address_policy(cfg.allow_private_destinations);
  options.sources = net::address_policy(cfg.allow_private_sources);
  api rest(store, registry, options);
  raise_descriptor_limit(cfg);
  net::server_options server_options;
  server_options.body_limit = cfg.max_body_bytes;
  server_options.timeout = std::chrono::seconds(cfg.request_timeout_seconds);
  server_options.idle_timeout = std::chrono::seconds(cfg.idle_timeout_seconds);
  server_options.max_connections = static_cast<std::size_t>(cfg.max_connections);
  net::http_server server(
      ioc, net::parse_endpoint(cfg.listen), server_options,
      [&rest](net::request req) { return rest.handle(std::move(req)); },
      [](unsigned status, std::string_view code, std::string_view message) {
        return api_error{static_cast<int>(status), std::string(code), "", std::string(message)}
            .to_json();
      },
      log_request);
  // Separate pools (DESIGN §2.1, no funnel): API requests, the scheduler's polls and runs,
  // and the delivery engine never queue behind one another's database jobs.
  storage::executor sched_db({db.url, cfg.db_scheduler_pool_size, cfg.db_connect_timeout_seconds,
                              cfg.db_statement_timeout_ms});
  storage::executor delivery_db({db.url, cfg.db_delivery_pool_size, cfg.db_connect_timeout_seconds,
                                 cfg.db_statement_timeout_ms});
  storage::store sched_store(sched_db, store.cipher(), clk);
  storage::store delivery_store(delivery_db, store.cipher(), clk);
  storage::feed_store feeds(sched_db, clk);
  scheduler::run_batches run_batches(ioc, feeds, sched_store, std::chrono::seconds(cfg.lease_seconds));
  // Sources go through their own SSRF guard at every connect: definition base URLs, api_url,
  // token_url and pagination links alike.
  net::address_policy source_policy(cfg.allow_private_sources);
  net::http_client source_client(ioc.get_executor(), source_client_options(cfg, source_policy));
  connection_health health(sched_store, &run_batches);
  sources::poller poller(source_client, health, clk);
  // Subscribers' endpoints go through the SSRF guard at every connect.
  net::address_policy destinations(cfg.allow_private_destinations);
  auto delivery_client_options = client_options_for(cfg);
  delivery_client_options.allow_address = [&destinations](const asio::ip::address& a) {
    return destinations.allowed(a);
  };
  delivery_client_options.allow_host = [&destinations](std::string_view host) {
    return !destinations.name_refusal(host);
  };
  // Every lane may keep its connection alive, many lanes deliver to one origin.
  delivery_client_options.max_idle_per_origin = static_cast<std::size_t>(cfg.delivery_lanes);
  // Only a receiver's status matters: its body is read up to 64 KiB, never inflated, never kept.
  delivery_client_options.max_response_bytes = 64 * 1024;
  delivery_client_options.accept_gzip = false;
  delivery_client_options.truncate_large_bodies = true;
  net::http_client delivery_client(ioc.get_executor(), delivery_client_options);
  auto sched_options = scheduler_options_for(cfg);
  storage::delivery_store delivery_records(delivery_db, store.cipher(), clk, sched_options.owner, 3);
  scheduler::delivery_options engine_options;
  engine_options.retry_schedule = cfg.retry_schedule;
  engine_options.max_lanes = cfg.delivery_lanes;
  engine_options.prepare_ahead = cfg.delivery_prepare_ahead;
  engine_options.lease = std::chrono::seconds(cfg.lease_seconds);
  scheduler::delivery_engine engine(ioc, delivery_client, delivery_store, delivery_records, clk,
                                    engine_options);
  scheduler::scheduler sched(ioc, sched_store, feeds, run_batches, poller, registry, clk, sched_options,
                             [&engine] { engine.wake(); });
  rest.on_trigger([&sched] { sched.wake(); });
  // This instance hears of a change at once; the others through NOTIFY.
  rest.on_webhook_changed([&engine](const std::string& id) { engine.changed(id); });
  sched.on_webhook_changed([&engine](const std::string& id) { engine.changed(id); });
  sched.start();
  engine.start();
  asio::co_spawn(ioc, prune_loop(feeds, cfg), log_exception);
  spdlog::info("scheduler started as {}", sched_options.owner);

  server.start();
  auto ep = server.local_endpoint();
  auto address = ep.address().to_string();
  auto host = ep.address().is_v6() ? fmt::format("[{}]", address) : address;
  std::cout << "hookd listening on http://" << host << ":" << ep.port() << std::endl;
  spdlog::info("listening on http://{}:{}", host, ep.port());

  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}; draining", sig);
    sd_notify(0, "STOPPING=1");
    server.stop();
    asio::co_spawn(ioc, drain_and_stop(ioc, server, sched, engine, std::chrono::seconds(cfg.drain_seconds)),
                   log_exception);
  });
  std::uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0)
    asio::co_spawn(ioc, watchdog_loop(ioc, watchdog_usec), log_exception);
  sd_notify(0, "READY=1");

  std::vector<std::thread> threads;
  for (int i = 1; i < cfg.threads; ++i) threads.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : threads) t.join();
  spdlog::info("stopped");
  return 0;
}

int run_migrate(const config& cfg) {
  setup_logging(cfg.log_format == "json" ? log_format::json : log_format::text, cfg.log_level);
  auto db = open_database(cfg);
  int version = db.executor->run_sync(
      [](pqxx::connection& c) { return storage::applied_migration_version(c); });
  std::cout << "database schema at version " << version << std::endl;
  return 0;
}

int run_workspace_create(const config& cfg, const std::string& name) {
  setup_logging(cfg.log_format == "json" ? log_format::json : log_format::text, "warn");
  auto cipher = load_cipher(cfg);
  auto db = open_database(cfg);
  system_clock clk;
  storage::store store(*db.executor, std::move(cipher), clk);
  auto key = "hookd_" + crypto::random_token(24);
  auto secret = "whsec_" + crypto::base64_encode(crypto::random_bytes(24));
  auto ws = store.create_workspace(name, key, secret);
  std::cout << "workspace_id: " << ws.id << "\n"
            << "api_key: " << key << "\n"
            << "workspace_secret: " << secret << std::endl;
  return 0;
}

namespace {

net::client_options client_options_for(const config& cfg) {
  net::client_options o;
  o.ca_file = cfg.ca_file;
  o.total_timeout = std::chrono::seconds(cfg.source_timeout_seconds);
  return o;
}

// `policy` must outlive the client.
net::client_options source_client_options(const config& cfg, const net::address_policy& policy) {
  auto o = client_options_for(cfg);
  o.allow_address = [&policy](const asio::ip::address& a) { return policy.allowed(a); };
  o.allow_host = [&policy](std::string_view host) { return !policy.name_refusal(host); };
  return o;
}

std::optional<std::map<std::string, std::string>> parse_filters(const std::vector<std::string>& raw) {
  std::map<std::string, std::string> out;
  for (const auto& f : raw) {
    auto eq = f.find('=');
    if (eq == std::string::npos || eq == 0) return std::nullopt;
    out[f.substr(0, eq)] = f.substr(eq + 1);
  }
  return out;
}

asio::awaitable<sources::scan_result> poll_once(sources::poller& p, sources::scan_request req) {
  auto sink = [](std::vector<sources::mapped_record> page) -> asio::awaitable<bool> {
    std::string out;
    for (const auto& r : page) {
      if (r.deleted) {
        // A tombstone: the record with a top-level "deleted": true.
        out.append(r.json, 0, r.json.size() - 1);
        out += ",\"deleted\":true}\n";
      } else {
        out += r.json;
        out.push_back('\n');
      }
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    co_return true;
  };
  co_return co_await p.scan(std::move(req), sink);
}

}  // namespace

int run_source_poll(const config& cfg, const source_poll_args& args) {
  setup_logging(cfg.log_format == "json" ? log_format::json : log_format::text,
                cfg.log_level == "info" ? "warn" : cfg.log_level);
  auto registry = sources::integration_registry::load(integrations_dir(cfg));
  std::optional<sys_time> since;
  if (!args.since.empty() && !(since = parse_iso8601(args.since))) {
    std::cerr << "hookd: --since must be an ISO-8601 date-time\n";
    return 2;
  }
  auto filters = parse_filters(args.filters);
  if (!filters) {
    std::cerr << "hookd: --filter must be key=value\n";
    return 2;
  }
  auto cipher = load_cipher(cfg);
  auto db = open_database(cfg);
  system_clock clk;
  storage::store store(*db.executor, std::move(cipher), clk);
  asio::io_context ioc;
  auto conn = asio::co_spawn(ioc, store.get_connection_by_id(args.connection_id), asio::use_future);
  ioc.run();
  auto c = conn.get();
  if (!c) {
    std::cerr << "hookd: no connection with id " << args.connection_id << "\n";
    return 2;
  }
  const auto* def = registry.find(c->integration_type);
  const auto* obj = def ? def->object(args.object_type) : nullptr;
  if (!obj) {
    std::cerr << "hookd: integration " << c->integration_type << " has no object type "
              << args.object_type << "\n";
    return 2;
  }
  net::address_policy source_policy(cfg.allow_private_sources);
  net::http_client client(ioc.get_executor(), source_client_options(cfg, source_policy));
  connection_health events(store);
  sources::poller poller(client, events, clk);
  sources::scan_request req{def, obj, c->id, c->auth_json, since, *filters};
  if (since && !obj->incremental)
    std::cerr << "note: " << def->type << " " << obj->object_type
              << " has no incremental parameter; this is a full scan\n";
  ioc.restart();
  auto fut = asio::co_spawn(ioc, poll_once(poller, std::move(req)), asio::use_future);
  ioc.run();
  auto result = fut.get();
  std::fflush(stdout);
  auto stats = fmt::format("pages={} records={} requests={} duration_ms={}", result.pages,
                           result.records, result.requests, result.duration.count());
  if (result.skipped)
    std::cerr << "note: " << result.skipped << " unusable records skipped; the first: "
              << result.skip_reason << "\n";
  if (result.complete) {
    std::cerr << "scan complete: " << stats << std::endl;
    return 0;
  }
  std::cerr << "scan incomplete: " << result.error << "; " << stats << std::endl;
  return 3;
}

}  // namespace hookd
