// Configuration: defaults, then the YAML file, then credentials, then HOOKD_* variables.
#include "daemon/config.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using hookd::config;
using hookd::config_error;
using hookd::config_sources;
using hookd::load_config;

namespace {

// A private directory under the system temp directory, removed at the end of the test.
class temp_dir {
public:
  temp_dir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("hookd-config-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  fs::path write(const std::string& name, const std::string& text) const {
    auto path = path_ / name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  const fs::path& path() const { return path_; }

private:
  fs::path path_;
};

config_sources env_only(std::map<std::string, std::string> environment) {
  environment.emplace("HOME", "/home/tester");
  return config_sources{.file = std::nullopt,
                        .environment = std::move(environment),
                        .credentials_directory = std::nullopt};
}

config_sources with_file(const fs::path& file,
                         std::map<std::string, std::string> environment = {}) {
  auto sources = env_only(std::move(environment));
  sources.file = file;
  return sources;
}

// The message of the config_error that loading these sources throws ("" if none).
std::string error_of(const config_sources& sources) {
  try {
    load_config(sources);
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

std::string error_of_yaml(const std::string& yaml) {
  temp_dir dir;
  return error_of(with_file(dir.write("config.yaml", yaml)));
}

std::string error_of_env(const std::string& name, const std::string& value) {
  return error_of(env_only({{name, value}}));
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

const std::string valid_key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";  // 32 bytes

}  // namespace

TEST_CASE("config: defaults apply when no source sets a key") {
  auto c = load_config(env_only({}));
  CHECK(c.listen == "127.0.0.1:8080");
  CHECK(c.database_url.empty());
  CHECK(c.api_key.empty());
  CHECK(c.workspace_secret.empty());
  CHECK(c.encryption_key.empty());
  CHECK(c.min_interval_seconds == 60);
  CHECK(c.max_page_limit == 1000);
  CHECK(c.allow_private_destinations.empty());
  CHECK(c.allow_private_sources.empty());
  CHECK(c.log_format == "text");
  CHECK(c.log_level == "info");
  CHECK(c.threads == 2);
  CHECK(c.db_pool_size == 4);
  CHECK(c.db_scheduler_pool_size == 4);
  CHECK(c.db_delivery_pool_size == 3);
  CHECK(c.delivery_lanes == 512);
  CHECK(c.delivery_prepare_ahead == 32);
  CHECK(c.max_concurrent_runs == 2048);
  CHECK(c.history_retention_hours == 168);
  CHECK(c.history_per_webhook == 100);
  CHECK(c.feed_grace_hours == 24);
  CHECK(c.max_body_bytes == 1024 * 1024);
  CHECK(c.max_connections == 1024);
  CHECK(c.idle_timeout_seconds == 60);
  CHECK(c.request_timeout_seconds == 30);
  CHECK(c.retry_schedule == hookd::default_retry_schedule());
  if (geteuid() == 0)
    CHECK(c.data_dir == fs::path("/var/lib/hookd"));
  else
    CHECK(c.data_dir == fs::path("/home/tester/.local/share/hookd"));
}

TEST_CASE("config: the default retry schedule is 20 Fibonacci minutes") {
  auto schedule = hookd::default_retry_schedule();
  REQUIRE(schedule.size() == 20);
  CHECK(schedule[0] == 60);
  CHECK(schedule[1] == 120);
  CHECK(schedule[2] == 180);
  CHECK(schedule[3] == 300);
  CHECK(schedule[4] == 480);
  CHECK(schedule[5] == 780);
  for (std::size_t i = 2; i < schedule.size(); ++i)
    CHECK(schedule[i] == schedule[i - 1] + schedule[i - 2]);
}

TEST_CASE("config: the YAML file overrides the defaults") {
  temp_dir dir;
  auto file = dir.write("config.yaml", R"(
listen: 127.0.0.1:9000
data_dir: /srv/hookd
min_interval_seconds: 0.5e1
max_page_limit: 50
log_format: json
log_level: debug
retry_schedule: [10, 20.5, 0]
threads: 8
db_pool_size: 16
max_body_bytes: 2048
allow_private_destinations: 10.0.0.0/8, fd00::/8
database_url: postgresql://db.example/hookd
postgres_bin_dir: /opt/pg/bin
)");
  auto c = load_config(with_file(file));
  CHECK(c.listen == "127.0.0.1:9000");
  CHECK(c.data_dir == fs::path("/srv/hookd"));
  CHECK(c.min_interval_seconds == 5);
  CHECK(c.max_page_limit == 50);
  CHECK(c.log_format == "json");
  CHECK(c.log_level == "debug");
  CHECK(c.retry_schedule == std::vector<double>{10, 20.5, 0});
  CHECK(c.threads == 8);
  CHECK(c.db_pool_size == 16);
  CHECK(c.max_body_bytes == 2048);
  CHECK(c.allow_private_destinations == "10.0.0.0/8,fd00::/8");
  CHECK(c.database_url == "postgresql://db.example/hookd");
  CHECK(c.postgres_bin_dir == "/opt/pg/bin");
  CHECK(c.log_format == "json");
}

TEST_CASE("config: an empty YAML file or a key without a value keeps the defaults") {
  temp_dir dir;
  CHECK(load_config(with_file(dir.write("empty.yaml", "# nothing yet\n"))).listen ==
        "127.0.0.1:8080");
  CHECK(load_config(with_file(dir.write("null.yaml", "listen:\n"))).listen == "127.0.0.1:8080");
}

TEST_CASE("config: environment variables override the YAML file") {
  temp_dir dir;
  auto file = dir.write("config.yaml", "listen: 127.0.0.1:9000\nthreads: 8\nlog_level: warn\n");
  auto c = load_config(with_file(file, {{"HOOKD_LISTEN", "[::1]:7000"},
                                        {"HOOKD_THREADS", "3"},
                                        {"HOOKD_MIN_INTERVAL_SECONDS", "1.5"},
                                        {"HOOKD_CONFIG", "/ignored/by/load_config.yaml"},
                                        {"PATH", "/usr/bin"}}));
  CHECK(c.listen == "[::1]:7000");
  CHECK(c.threads == 3);
  CHECK(c.min_interval_seconds == 1.5);
  CHECK(c.log_level == "warn");  // not overridden
}

TEST_CASE("config: an empty environment variable counts as unset") {
  temp_dir dir;
  auto file = dir.write("config.yaml", "threads: 8\n");
  CHECK(load_config(with_file(file, {{"HOOKD_THREADS", ""}})).threads == 8);
}

TEST_CASE("config: secrets come from the credentials directory, below the environment") {
  temp_dir dir;
  auto credentials = dir.path() / "credentials";
  fs::create_directories(credentials);
  dir.write("credentials/api_key", "key-from-credential\n");
  dir.write("credentials/workspace_secret", "secret-from-credential\r\n");
  dir.write("credentials/encryption_key", valid_key + "\n");
  dir.write("credentials/database_url", "postgres://u@db/hookd\n");
  dir.write("credentials/listen", "0.0.0.0:1\n");  // not a secret: ignored

  auto sources = env_only({});
  sources.credentials_directory = credentials;
  auto c = load_config(sources);
  CHECK(c.api_key == "key-from-credential");
  CHECK(c.workspace_secret == "secret-from-credential");
  CHECK(c.encryption_key == valid_key);
  CHECK(c.database_url == "postgres://u@db/hookd");
  CHECK(c.listen == "127.0.0.1:8080");

  sources.environment["HOOKD_API_KEY"] = "key-from-environment";
  CHECK(load_config(sources).api_key == "key-from-environment");

  SUBCASE("$CREDENTIALS_DIRECTORY in the environment is used when none is given") {
    auto from_env = env_only({{"CREDENTIALS_DIRECTORY", credentials.string()}});
    CHECK(load_config(from_env).api_key == "key-from-credential");
  }
}

TEST_CASE("config: a missing credentials directory is an error") {
  auto sources = env_only({});
  sources.credentials_directory = fs::temp_directory_path() / "hookd-no-such-credentials-dir";
  CHECK(contains(error_of(sources), "credentials directory"));
}

TEST_CASE("config: an unknown YAML key is an error naming the key") {
  auto message = error_of_yaml("lissten: 127.0.0.1:9000\n");
  CHECK(contains(message, "config.yaml: unknown key 'lissten'"));
  CHECK(contains(message, "did you mean 'listen'?"));
}

TEST_CASE("config: an unknown HOOKD_ variable is an error naming it") {
  auto message = error_of_env("HOOKD_LISSTEN", "127.0.0.1:9000");
  CHECK(contains(message, "HOOKD_LISSTEN"));
  CHECK(contains(message, "HOOKD_LISTEN?"));
  CHECK(contains(error_of_env("HOOKD_listen", "127.0.0.1:9000"), "HOOKD_listen"));
  CHECK(error_of_env("HOOKD_CONFIG", "/etc/hookd/config.yaml").empty());
  CHECK(error_of_env("NOT_HOOKD_THING", "x").empty());
}

TEST_CASE("config: a value of the wrong type is an error naming the key") {
  auto message = error_of_yaml("threads: [1, 2]\n");
  CHECK(contains(message, "configuration key 'threads'"));
  CHECK(contains(message, "got a list"));
  CHECK(contains(error_of_yaml("listen: {host: a}\n"), "configuration key 'listen'"));
  CHECK(contains(error_of_yaml("retry_schedule: {a: 1}\n"), "configuration key 'retry_schedule'"));

  CHECK(error_of_env("HOOKD_MIN_INTERVAL_SECONDS", "abc") ==
        "configuration key 'min_interval_seconds' (HOOKD_MIN_INTERVAL_SECONDS): "
        "must be a number >= 1, got \"abc\"");
  CHECK(contains(error_of_env("HOOKD_THREADS", "2.5"), "must be an integer from 1 to 64"));
  CHECK(contains(error_of_yaml("max_page_limit: lots\n"), "config.yaml:1"));
}

TEST_CASE("config: numbers out of range are errors") {
  CHECK(contains(error_of_env("HOOKD_MIN_INTERVAL_SECONDS", "0.5"), "'min_interval_seconds'"));
  CHECK(contains(error_of_env("HOOKD_MAX_PAGE_LIMIT", "0"), "'max_page_limit'"));
  CHECK(contains(error_of_env("HOOKD_MAX_PAGE_LIMIT", "100001"), "'max_page_limit'"));
  CHECK(contains(error_of_env("HOOKD_THREADS", "65"), "'threads'"));
  CHECK(contains(error_of_env("HOOKD_DB_POOL_SIZE", "0"), "'db_pool_size'"));
  CHECK(contains(error_of_env("HOOKD_DB_SCHEDULER_POOL_SIZE", "0"), "'db_scheduler_pool_size'"));
  // The engine's batched reads and writes run side by side: one thread would serialise them.
  CHECK(contains(error_of_env("HOOKD_DB_DELIVERY_POOL_SIZE", "1"), "'db_delivery_pool_size'"));
  CHECK(contains(error_of_env("HOOKD_DELIVERY_LANES", "0"), "'delivery_lanes'"));
  CHECK(contains(error_of_env("HOOKD_DELIVERY_PREPARE_AHEAD", "1001"), "'delivery_prepare_ahead'"));
  // The webhook's `runs` shows ten: fewer kept would make it lie.
  CHECK(contains(error_of_env("HOOKD_HISTORY_PER_WEBHOOK", "9"), "'history_per_webhook'"));
  CHECK(contains(error_of_env("HOOKD_HISTORY_RETENTION_HOURS", "0"), "'history_retention_hours'"));
  CHECK(contains(error_of_env("HOOKD_FEED_GRACE_HOURS", "-1"), "'feed_grace_hours'"));
  CHECK(contains(error_of_env("HOOKD_DB_CONNECT_TIMEOUT_SECONDS", "0"), "must be an integer >= 1"));
  CHECK(contains(error_of_env("HOOKD_DB_STATEMENT_TIMEOUT_MS", "-5"), "'db_statement_timeout_ms'"));
  CHECK(contains(error_of_env("HOOKD_REQUEST_TIMEOUT_SECONDS", "0"), "'request_timeout_seconds'"));
  CHECK(contains(error_of_env("HOOKD_MAX_BODY_BYTES", "1023"), "'max_body_bytes'"));
  CHECK(contains(error_of_env("HOOKD_MAX_CONNECTIONS", "0"), "'max_connections'"));
  CHECK(contains(error_of_env("HOOKD_MAX_CONNECTIONS", "0"),
                 "must be an integer from 1 to 1000000, got \"0\""));
  CHECK(contains(error_of_env("HOOKD_MAX_CONNECTIONS", "many"), "'max_connections'"));
  CHECK(load_config(env_only({{"HOOKD_MAX_CONNECTIONS", "20000"}})).max_connections == 20000);
  CHECK(contains(error_of_env("HOOKD_IDLE_TIMEOUT_SECONDS", "0"),
                 "'idle_timeout_seconds'"));
  CHECK(contains(error_of_env("HOOKD_MAX_BODY_BYTES", "1073741825"), "'max_body_bytes'"));
  CHECK(load_config(env_only({{"HOOKD_MAX_BODY_BYTES", "1073741824"}})).max_body_bytes ==
        1073741824);
  CHECK(contains(error_of_env("HOOKD_MIN_INTERVAL_SECONDS", "inf"), "must be a number"));
}

TEST_CASE("config: listen must be host:port") {
  CHECK(load_config(env_only({{"HOOKD_LISTEN", "0.0.0.0:0"}})).listen == "0.0.0.0:0");
  CHECK(load_config(env_only({{"HOOKD_LISTEN", "localhost:65535"}})).listen == "localhost:65535");
  CHECK(load_config(env_only({{"HOOKD_LISTEN", "[::]:80"}})).listen == "[::]:80");
  for (const char* bad : {"8080", "127.0.0.1", "127.0.0.1:65536", "::1:80", "[::1]", "[zz]:80",
                          ":80", "host:", "host:8o", "300.1.2.3:80", "a b:80"})
    CHECK_MESSAGE(contains(error_of_env("HOOKD_LISTEN", bad), "configuration key 'listen'"), bad);
}

TEST_CASE("config: a bad log format or level lists the valid values") {
  auto message = error_of_env("HOOKD_LOG_FORMAT", "xml");
  CHECK(contains(message, "'log_format'"));
  CHECK(contains(message, "text, json"));
  CHECK(contains(message, "\"xml\""));
  CHECK(contains(error_of_env("HOOKD_LOG_LEVEL", "verbose"),
                 "trace, debug, info, warn, error, critical, off"));
  CHECK(load_config(env_only({{"HOOKD_LOG_LEVEL", "WARN"}})).log_level == "warn");
}

TEST_CASE("config: allow_private_destinations takes true, false or CIDRs") {
  auto value = [](const std::string& text) {
    return load_config(env_only({{"HOOKD_ALLOW_PRIVATE_DESTINATIONS", text}}))
        .allow_private_destinations;
  };
  CHECK(value("true") == "true");
  CHECK(value("false").empty());
  CHECK(value("192.168.0.0/16") == "192.168.0.0/16");
  CHECK(value("10.0.0.0/8 , 127.0.0.1/32,::1/128") == "10.0.0.0/8,127.0.0.1/32,::1/128");
  CHECK(value("0.0.0.0/0,::/0") == "0.0.0.0/0,::/0");

  temp_dir dir;
  auto file = dir.write("config.yaml", "allow_private_destinations: [10.0.0.0/8, fc00::/7]\n");
  CHECK(load_config(with_file(file)).allow_private_destinations == "10.0.0.0/8,fc00::/7");
  CHECK(load_config(with_file(dir.write("b.yaml", "allow_private_destinations: true\n")))
            .allow_private_destinations == "true");
}

TEST_CASE("config: allow_private_sources is its own list, with the same forms") {
  auto cfg = [](std::map<std::string, std::string> env) { return load_config(env_only(env)); };
  auto both = cfg({{"HOOKD_ALLOW_PRIVATE_SOURCES", "10.0.0.0/8, fd00::/8"}});
  CHECK(both.allow_private_sources == "10.0.0.0/8,fd00::/8");
  CHECK(both.allow_private_destinations.empty());  // opening sources opens no destination
  CHECK(cfg({{"HOOKD_ALLOW_PRIVATE_SOURCES", "true"}}).allow_private_sources == "true");
  CHECK(cfg({{"HOOKD_ALLOW_PRIVATE_SOURCES", "false"}}).allow_private_sources.empty());
  CHECK(cfg({{"HOOKD_ALLOW_PRIVATE_DESTINATIONS", "true"}}).allow_private_sources.empty());
  temp_dir dir;
  auto file = dir.write("config.yaml", "allow_private_sources: [127.0.0.0/8, ::1/128]\n");
  CHECK(load_config(with_file(file)).allow_private_sources == "127.0.0.0/8,::1/128");
  auto message = error_of_env("HOOKD_ALLOW_PRIVATE_SOURCES", "10.0.0.0/33");
  CHECK(contains(message, "'allow_private_sources'"));
  CHECK(contains(message, "is not a CIDR"));
}

TEST_CASE("config: a bad CIDR is an error naming the key and the entry") {
  for (const char* bad : {"10.0.0.0/33", "10.0.0.300/8", "10.0.0.0", "fd00::/129", "fd00::/x",
                          "10.0.0.0/8,,", "yes", "10.0.0.0/8,true", "example.com/8"}) {
    auto message = error_of_env("HOOKD_ALLOW_PRIVATE_DESTINATIONS", bad);
    CHECK_MESSAGE(contains(message, "'allow_private_destinations'"), bad);
    CHECK_MESSAGE(contains(message, "is not a CIDR"), bad);
  }
  CHECK(contains(error_of_env("HOOKD_ALLOW_PRIVATE_DESTINATIONS", "10.0.0.0/8,10.0.0.300/8"),
                 "\"10.0.0.300/8\" is not a CIDR"));
}

TEST_CASE("config: retry schedules parse from lists and comma-separated strings") {
  auto schedule = [](const std::string& text) {
    return load_config(env_only({{"HOOKD_RETRY_SCHEDULE", text}})).retry_schedule;
  };
  CHECK(schedule("60,120,300") == std::vector<double>{60, 120, 300});
  CHECK(schedule(" 1 , 2.5 ") == std::vector<double>{1, 2.5});
  CHECK(schedule("[0, 30]") == std::vector<double>{0, 30});
  CHECK(schedule("45") == std::vector<double>{45});

  temp_dir dir;
  CHECK(load_config(with_file(dir.write("a.yaml", "retry_schedule: [60, 120]\n")))
            .retry_schedule == std::vector<double>{60, 120});
  CHECK(load_config(with_file(dir.write("b.yaml", "retry_schedule: \"60,120\"\n")))
            .retry_schedule == std::vector<double>{60, 120});
  CHECK(load_config(with_file(dir.write("c.yaml", "retry_schedule:\n  - 5\n  - 10\n")))
            .retry_schedule == std::vector<double>{5, 10});

  std::string too_many;
  for (int i = 0; i < 101; ++i) too_many += (i ? ",1" : "1");
  CHECK(contains(error_of_env("HOOKD_RETRY_SCHEDULE", too_many), "got 101 entries"));
  CHECK(contains(error_of_env("HOOKD_RETRY_SCHEDULE", "60,-1"), "entry 2 is \"-1\""));
  CHECK(contains(error_of_env("HOOKD_RETRY_SCHEDULE", "60,,120"), "entry 2 is \"\""));
  CHECK(contains(error_of_env("HOOKD_RETRY_SCHEDULE", "soon"), "'retry_schedule'"));
  CHECK(contains(error_of_yaml("retry_schedule: []\n"), "non-empty"));
}

TEST_CASE("config: encryption_key and database_url are validated") {
  CHECK(load_config(env_only({{"HOOKD_ENCRYPTION_KEY", valid_key}})).encryption_key == valid_key);
  CHECK(contains(error_of_env("HOOKD_ENCRYPTION_KEY", "c2hvcnQ="), "decodes to 5 bytes"));
  CHECK(contains(error_of_env("HOOKD_ENCRYPTION_KEY", "not base64!"), "not valid base64"));

  for (const char* url : {"postgres://h/db", "postgresql:///db?host=/run", "host=db dbname=x"})
    CHECK(load_config(env_only({{"HOOKD_DATABASE_URL", url}})).database_url == url);
  CHECK(contains(error_of_env("HOOKD_DATABASE_URL", "mysql://h/db"), "'database_url'"));
}

TEST_CASE("config: secret values never appear in error messages") {
  const std::string secret = "s3cr3t-VALUE-do-not-print";
  std::vector<std::pair<std::string, std::string>> cases = {
      {"HOOKD_ENCRYPTION_KEY", secret},
      {"HOOKD_DATABASE_URL", secret},
      {"HOOKD_API_KEY", secret + "\x01"},
      {"HOOKD_WORKSPACE_SECRET", secret + "\n"},
  };
  for (const auto& [name, value] : cases) {
    auto message = error_of_env(name, value);
    CHECK_MESSAGE(!message.empty(), name);
    CHECK_MESSAGE(!contains(message, "s3cr3t"), message);
  }

  temp_dir dir;
  auto message = error_of_yaml("encryption_key: " + secret + "\n");
  CHECK(contains(message, "'encryption_key'"));
  CHECK(!contains(message, "s3cr3t"));
  message = error_of_yaml("database_url: " + secret + "\n");
  CHECK(contains(message, "'database_url'"));
  CHECK(!contains(message, "s3cr3t"));

  auto credentials = dir.path() / "credentials";
  fs::create_directories(credentials);
  dir.write("credentials/encryption_key", secret + "\n");
  auto sources = env_only({});
  sources.credentials_directory = credentials;
  message = error_of(sources);
  CHECK(contains(message, "credential "));
  CHECK(!contains(message, "s3cr3t"));
}

TEST_CASE("config: file problems are errors naming the file") {
  temp_dir dir;
  auto missing = dir.path() / "missing.yaml";
  CHECK(contains(error_of(with_file(missing)), missing.string()));
  CHECK(contains(error_of_yaml("listen: [unclosed\n"), "config.yaml: not valid YAML"));
  CHECK(contains(error_of_yaml("- listen\n- threads\n"), "config.yaml: must be a mapping"));
  CHECK(contains(error_of_yaml("just a string\n"), "config.yaml: must be a mapping"));
}

TEST_CASE("config: data_dir expands ~ and becomes absolute") {
  CHECK(load_config(env_only({{"HOOKD_DATA_DIR", "~/hookd-data"}})).data_dir ==
        fs::path("/home/tester/hookd-data"));
  CHECK(load_config(env_only({{"HOOKD_DATA_DIR", "relative/dir"}})).data_dir ==
        fs::absolute("relative/dir"));
}
