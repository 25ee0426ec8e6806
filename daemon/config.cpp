// Loads hookd's configuration: defaults, then the YAML file, then systemd credentials, then
// HOOKD_<KEY> environment variables. Every key is parsed and validated by one entry of a key
// table, so the file, the credentials and the environment accept exactly the same values.
#include "daemon/config.hpp"

#include "core/crypto.hpp"
#include "core/validation.hpp"

#include <arpa/inet.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

extern char** environ;

namespace hookd {
namespace {

namespace fs = std::filesystem;

// HOOKD_* variables that are not configuration keys (read by the command line instead).
const std::set<std::string, std::less<>> non_key_variables = {"HOOKD_CONFIG"};

// A value as one source gives it. Only YAML can give lists and mappings.
struct raw_value {
  enum class kind { scalar, list, mapping };
  kind shape = kind::scalar;
  std::string text;                // the scalar
  std::vector<std::string> items;  // the list's scalars
  std::string origin;              // "HOOKD_LISTEN", "config.yaml:3", "credential /run/.../api_key"
};

raw_value scalar(std::string text, std::string origin) {
  raw_value v;
  v.text = std::move(text);
  v.origin = std::move(origin);
  return v;
}

// What is wrong with a value, without the key: apply() adds the key and where the value came
// from, and appends the offending value unless the key is a secret.
struct value_error : std::runtime_error {
  value_error(const std::string& message, bool echo = true)
      : std::runtime_error(message), echo_value(echo) {}
  bool echo_value;  // false: the message already shows what it needs, or must show nothing
};

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string> split(std::string_view s, char separator) {
  std::vector<std::string> parts;
  for (std::size_t start = 0;;) {
    auto end = s.find(separator, start);
    parts.emplace_back(trim(s.substr(start, end == std::string_view::npos ? end : end - start)));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (const auto& part : parts) {
    if (!out.empty()) out += separator;
    out += part;
  }
  return out;
}

// A value quoted for an error message: control characters escaped, long values cut.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    else if (c == '"' || c == '\\')
      out += std::string{'\\', c};
    else
      out += c;
  }
  if (s.size() > 80) out += "...";
  return '"' + out + '"';
}

bool has_control_characters(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

std::optional<double> to_number(std::string_view s) {
  s = trim(s);
  double value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || !std::isfinite(value))
    return std::nullopt;
  return value;
}

template <class Integer>
std::optional<Integer> to_integer(std::string_view s) {
  s = trim(s);
  Integer value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return value;
}

std::string describe(const raw_value& v) {
  return v.shape == raw_value::kind::list ? "a list" : "a mapping";
}

// The scalar text of a value that must be a single value.
const std::string& scalar_of(const raw_value& v, std::string_view expectation) {
  if (v.shape != raw_value::kind::scalar)
    throw value_error(fmt::format("{}, got {}", expectation, describe(v)), false);
  return v.text;
}

std::string string_value(const raw_value& v) { return scalar_of(v, "must be a string"); }

template <class Integer>
Integer integer_between(const raw_value& v, Integer low, Integer high) {
  const auto expectation = fmt::format("must be an integer from {} to {}", low, high);
  auto value = to_integer<Integer>(scalar_of(v, expectation));
  if (!value || *value < low || *value > high) throw value_error(expectation);
  return *value;
}

int positive_integer(const raw_value& v) {
  const std::string expectation = "must be an integer >= 1";
  auto value = to_integer<int>(scalar_of(v, expectation));
  if (!value || *value < 1) throw value_error(expectation);
  return *value;
}

double number_at_least(const raw_value& v, double low) {
  const auto expectation = fmt::format("must be a number >= {}", low);
  auto value = to_number(scalar_of(v, expectation));
  if (!value || *value < low) throw value_error(expectation);
  return *value;
}

std::string one_of(const raw_value& v, const std::vector<std::string>& choices) {
  const auto expectation = fmt::format("must be one of: {}", join(choices, ", "));
  auto value = lower(trim(scalar_of(v, expectation)));
  if (std::find(choices.begin(), choices.end(), value) == choices.end())
    throw value_error(expectation);
  return value;
}

bool is_ipv4(const std::string& s) {
  unsigned char buffer[sizeof(in_addr)];
  return inet_pton(AF_INET, s.c_str(), buffer) == 1;
}

bool is_ipv6(const std::string& s) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET6, s.c_str(), buffer) == 1;
}

bool is_host_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  bool all_digits_and_dots = true;
  for (char c : host) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
      return false;
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.') all_digits_and_dots = false;
  }
  // "300.1.2.3" would be looked up as a name and fail much later at bind time.
  return !all_digits_and_dots || is_ipv4(std::string(host));
}

std::string parse_listen(const raw_value& v) {
  const std::string expectation =
      "must be host:port with a port from 0 to 65535 (an IPv6 address in brackets, e.g. "
      "[::1]:8080)";
  auto text = trim(scalar_of(v, expectation));
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) throw value_error(expectation);
  auto host = text.substr(0, colon);
  auto port = text.substr(colon + 1);
  bool host_ok = host.size() > 2 && host.front() == '[' && host.back() == ']'
                     ? is_ipv6(std::string(host.substr(1, host.size() - 2)))
                     : is_host_name(host);
  auto port_number = to_integer<unsigned>(port);
  if (!host_ok || port.empty() || trim(port) != port || !port_number || *port_number > 65535)
    throw value_error(expectation);
  return std::string(text);
}

bool is_cidr(std::string_view entry) {
  auto slash = entry.find('/');
  if (slash == std::string_view::npos) return false;
  std::string address(entry.substr(0, slash));
  auto prefix = to_integer<int>(entry.substr(slash + 1));
  if (!prefix || *prefix < 0 || trim(entry.substr(slash + 1)) != entry.substr(slash + 1))
    return false;
  if (is_ipv4(address)) return *prefix <= 32;
  if (is_ipv6(address)) return *prefix <= 128;
  return false;
}

std::string parse_private_ranges(const raw_value& v) {
  const std::string expectation =
      R"(must be "true", "false" or a comma-separated list of CIDRs such as 10.0.0.0/8,fd00::/8)";
  if (v.shape == raw_value::kind::mapping) throw value_error(expectation, false);
  auto entries = v.shape == raw_value::kind::list ? v.items : split(v.text, ',');
  if (entries.size() == 1) {
    auto word = lower(entries.front());
    if (word.empty() || word == "false") return "";
    if (word == "true") return "true";
  }
  for (auto& entry : entries) {
    entry = std::string(trim(entry));
    if (!is_cidr(entry))
      throw value_error(fmt::format("{}; {} is not a CIDR", expectation, printable(entry)), false);
  }
  return join(entries, ",");
}

std::vector<double> parse_retry_schedule(const raw_value& v) {
  const std::string expectation =
      "must be a non-empty list of at most 100 non-negative numbers of seconds, like 60,120,300";
  if (v.shape == raw_value::kind::mapping) throw value_error(expectation, false);
  std::vector<std::string> items = v.items;
  if (v.shape == raw_value::kind::scalar) {
    auto text = trim(v.text);
    // Accept the YAML flow form in a variable too: HOOKD_RETRY_SCHEDULE="[60, 120]".
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
      text = text.substr(1, text.size() - 2);
    if (!trim(text).empty()) items = split(text, ',');
  }
  if (items.empty() || items.size() > 100)
    throw value_error(fmt::format("{}; got {} entries", expectation, items.size()), false);
  std::vector<double> delays;
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto delay = to_number(items[i]);
    if (!delay || *delay < 0)
      throw value_error(
          fmt::format("{}; entry {} is {}", expectation, i + 1, printable(items[i])), false);
    delays.push_back(*delay);
  }
  return delays;
}

// Secrets: the messages below never include the value.
std::string parse_secret(const raw_value& v) {
  auto value = scalar_of(v, "must be a string");
  if (has_control_characters(value))
    throw value_error("must not contain control characters (the value is not shown)", false);
  return value;
}

std::string parse_encryption_key(const raw_value& v) {
  auto text = std::string(trim(scalar_of(v, "must be a string")));
  if (text.empty()) return text;
  auto key = crypto::base64_decode(text);
  if (!key || key->size() != 32)
    throw value_error(
        fmt::format("must be the base64 encoding of exactly 32 bytes, e.g. from `openssl rand "
                    "-base64 32` ({}; the value is not shown)",
                    key ? fmt::format("it decodes to {} bytes", key->size())
                        : std::string("it is not valid base64")),
        false);
  return text;
}

std::string parse_database_url(const raw_value& v) {
  auto text = std::string(trim(scalar_of(v, "must be a string")));
  if (text.empty() || text.starts_with("postgres://") || text.starts_with("postgresql://") ||
      text.find('=') != std::string::npos)
    return text;
  throw value_error(
      "must be a postgres:// or postgresql:// URL or a libpq key=value string such as "
      "\"host=db dbname=hookd\" (the value is not shown)",
      false);
}

using applier = std::function<void(config&, const raw_value&)>;

struct key_spec {
  std::string_view name;
  bool secret;
  applier apply;
};

const std::vector<key_spec>& key_specs() {
  using v = const raw_value&;
  static const std::vector<key_spec> specs = {
      {"listen", false, [](config& c, v x) { c.listen = parse_listen(x); }},
      {"database_url", true, [](config& c, v x) { c.database_url = parse_database_url(x); }},
      {"data_dir", false, [](config& c, v x) { c.data_dir = string_value(x); }},
      {"api_key", true, [](config& c, v x) { c.api_key = parse_secret(x); }},
      {"workspace_secret", true, [](config& c, v x) { c.workspace_secret = parse_secret(x); }},
      {"notification_url", false,
       [](config& c, v x) {
         c.notification_url = string_value(x);
         if (!c.notification_url.empty())
           if (auto why = check_http_url(c.notification_url)) throw value_error(*why);
       }},
      {"encryption_key", true, [](config& c, v x) { c.encryption_key = parse_encryption_key(x); }},
      {"min_interval_seconds", false,
       [](config& c, v x) { c.min_interval_seconds = number_at_least(x, 1); }},
      {"max_page_limit", false,
       [](config& c, v x) { c.max_page_limit = integer_between(x, 1, 100000); }},
      {"allow_private_destinations", false,
       [](config& c, v x) { c.allow_private_destinations = parse_private_ranges(x); }},
      {"allow_private_sources", false,
       [](config& c, v x) { c.allow_private_sources = parse_private_ranges(x); }},
      {"log_format", false, [](config& c, v x) { c.log_format = one_of(x, {"text", "json"}); }},
      {"log_level", false,
       [](config& c, v x) {
         c.log_level =
             one_of(x, {"trace", "debug", "info", "warn", "error", "critical", "off"});
       }},
      {"retry_schedule", false,
       [](config& c, v x) { c.retry_schedule = parse_retry_schedule(x); }},
      {"threads", false, [](config& c, v x) { c.threads = integer_between(x, 1, 64); }},
      {"db_pool_size", false, [](config& c, v x) { c.db_pool_size = integer_between(x, 1, 64); }},
      {"db_scheduler_pool_size", false,
       [](config& c, v x) { c.db_scheduler_pool_size = integer_between(x, 1, 64); }},
      {"db_delivery_pool_size", false,
       [](config& c, v x) { c.db_delivery_pool_size = integer_between(x, 2, 64); }},
      {"delivery_lanes", false, [](config& c, v x) { c.delivery_lanes = integer_between(x, 1, 100000); }},
      {"delivery_prepare_ahead", false,
       [](config& c, v x) { c.delivery_prepare_ahead = integer_between(x, 1, 1000); }},
      {"db_connect_timeout_seconds", false,
       [](config& c, v x) { c.db_connect_timeout_seconds = positive_integer(x); }},
      {"db_statement_timeout_ms", false,
       [](config& c, v x) { c.db_statement_timeout_ms = positive_integer(x); }},
      {"max_body_bytes", false,
       [](config& c, v x) {
         c.max_body_bytes = integer_between<std::size_t>(x, 1024, std::size_t{1} << 30);
       }},
      {"request_timeout_seconds", false,
       [](config& c, v x) { c.request_timeout_seconds = positive_integer(x); }},
      {"idle_timeout_seconds", false,
       [](config& c, v x) { c.idle_timeout_seconds = integer_between(x, 1, 86400); }},
      {"max_connections", false,
       [](config& c, v x) { c.max_connections = integer_between(x, 1, 1000000); }},
      {"postgres_bin_dir", false, [](config& c, v x) { c.postgres_bin_dir = string_value(x); }},
      {"integrations_dir", false, [](config& c, v x) { c.integrations_dir = string_value(x); }},
      {"ca_file", false,
       [](config& c, v x) {
         c.ca_file = string_value(x);
         if (!c.ca_file.empty() && !std::ifstream(c.ca_file))
           throw value_error("must name a readable PEM file");
       }},
      {"source_timeout_seconds", false,
       [](config& c, v x) { c.source_timeout_seconds = integer_between(x, 1, 3600); }},
      {"instance_id", false, [](config& c, v x) { c.instance_id = string_value(x); }},
      {"lease_seconds", false, [](config& c, v x) { c.lease_seconds = integer_between(x, 3, 86400); }},
      {"feed_freshness_seconds", false,
       [](config& c, v x) { c.feed_freshness_seconds = integer_between(x, 0, 3600); }},
      {"scheduler_batch", false, [](config& c, v x) { c.scheduler_batch = integer_between(x, 1, 10000); }},
      {"max_concurrent_runs", false,
       [](config& c, v x) { c.max_concurrent_runs = integer_between(x, 1, 100000); }},
      {"full_scan_every", false, [](config& c, v x) { c.full_scan_every = integer_between(x, 1, 1000000); }},
      {"delete_scan_every", false,
       [](config& c, v x) { c.delete_scan_every = integer_between(x, 1, 1000000); }},
      {"incremental_overlap_seconds", false,
       [](config& c, v x) { c.incremental_overlap_seconds = integer_between(x, 0, 86400 * 30); }},
      {"drain_seconds", false, [](config& c, v x) { c.drain_seconds = integer_between(x, 0, 3600); }},
      {"log_retention_hours", false,
       [](config& c, v x) { c.log_retention_hours = integer_between(x, 0, 24 * 3650); }},
      {"history_retention_hours", false,
       [](config& c, v x) { c.history_retention_hours = integer_between(x, 1, 24 * 3650); }},
      // The webhook's `runs` shows the latest ten: the history keeps at least as many.
      {"history_per_webhook", false,
       [](config& c, v x) { c.history_per_webhook = integer_between(x, 10, 1000000); }},
      {"feed_grace_hours", false, [](config& c, v x) { c.feed_grace_hours = integer_between(x, 0, 24 * 3650); }},
  };
  return specs;
}

const key_spec* find_key(std::string_view name) {
  for (const auto& spec : key_specs())
    if (spec.name == name) return &spec;
  return nullptr;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean 'listen'?)" for a near miss, so a typo is fixed without reading the docs.
std::string suggestion(std::string_view unknown, bool as_variable) {
  const key_spec* best = nullptr;
  std::size_t best_distance = 3;
  for (const auto& spec : key_specs()) {
    auto distance = edit_distance(lower(unknown), spec.name);
    if (distance < best_distance) best = &spec, best_distance = distance;
  }
  if (!best) return "";
  return as_variable ? fmt::format(" (did you mean HOOKD_{}?)", upper(best->name))
                     : fmt::format(" (did you mean '{}'?)", best->name);
}

void apply(const key_spec& spec, config& c, const raw_value& v) {
  try {
    spec.apply(c, v);
  } catch (const value_error& e) {
    auto message = fmt::format("configuration key '{}' ({}): {}", spec.name, v.origin, e.what());
    if (e.echo_value && !spec.secret && v.shape == raw_value::kind::scalar)
      message += fmt::format(", got {}", printable(v.text));
    throw config_error(message);
  }
}

std::string read_file(const fs::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw config_error(fmt::format("{}: cannot read {}: {}", path.string(), what,
                                   std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

raw_value from_yaml(const YAML::Node& node, std::string origin) {
  raw_value v;
  v.origin = std::move(origin);
  if (node.IsScalar()) {
    v.text = node.Scalar();
  } else if (node.IsSequence()) {
    v.shape = raw_value::kind::list;
    for (const auto& item : node) {
      if (!item.IsScalar()) {
        v.shape = raw_value::kind::mapping;  // a nested structure: no key takes one
        break;
      }
      v.items.push_back(item.Scalar());
    }
  } else {
    v.shape = raw_value::kind::mapping;
  }
  return v;
}

void apply_file(config& c, const fs::path& file) {
  auto text = read_file(file, "configuration file");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    // The usual cause is an unquoted value that YAML reads as syntax, like [::1]:8080.
    throw config_error(fmt::format(
        "{}: not valid YAML: {} (quote values containing [ ] {{ }} # or \": \", e.g. "
        "listen: \"[::1]:8080\")",
        file.string(), e.what()));
  }
  if (root.IsNull()) return;  // an empty or fully commented-out file
  if (!root.IsMap())
    throw config_error(fmt::format(
        "{}: must be a mapping of configuration keys to values, like `listen: 127.0.0.1:8080`",
        file.string()));
  for (const auto& entry : root) {
    auto line = entry.first.Mark().line + 1;
    if (!entry.first.IsScalar())
      throw config_error(fmt::format("{}:{}: a key must be a plain name", file.string(), line));
    const auto& name = entry.first.Scalar();
    const key_spec* spec = find_key(name);
    if (!spec)
      throw config_error(fmt::format("{}: unknown key '{}' at line {}{}", file.string(), name,
                                     line, suggestion(name, false)));
    if (entry.second.IsNull()) continue;  // `key:` with no value keeps the default
    apply(*spec, c, from_yaml(entry.second, fmt::format("{}:{}", file.string(), line)));
  }
}

// systemd credentials carry secrets only; the file is named exactly like the key.
void apply_credentials(config& c, const fs::path& directory) {
  std::error_code ec;
  if (!fs::is_directory(directory, ec))
    throw config_error(
        fmt::format("credentials directory {} does not exist", directory.string()));
  for (const auto& spec : key_specs()) {
    if (!spec.secret) continue;
    auto path = directory / spec.name;
    if (!fs::exists(path, ec)) continue;
    auto text = read_file(path, "credential");
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    apply(spec, c, scalar(text, "credential " + path.string()));
  }
}

void apply_environment(config& c, const std::map<std::string, std::string>& environment) {
  constexpr std::string_view prefix = "HOOKD_";
  for (const auto& [name, value] : environment) {
    if (!name.starts_with(prefix) || non_key_variables.contains(name)) continue;
    auto key = std::string_view(name).substr(prefix.size());
    const key_spec* spec = find_key(lower(key));
    if (!spec || upper(spec->name) != key)
      throw config_error(fmt::format("unknown environment variable {}: not a hookd "
                                     "configuration key{}",
                                     name, suggestion(key, true)));
    // Container and EnvironmentFile templates often declare variables empty: that means unset.
    if (value.empty()) continue;
    apply(*spec, c, scalar(value, name));
  }
}

std::string home_directory(const std::map<std::string, std::string>& environment) {
  if (auto it = environment.find("HOME"); it != environment.end() && !it->second.empty())
    return it->second;
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (getpwuid_r(geteuid(), &entry, buffer.data(), buffer.size(), &found) == 0 && found &&
      found->pw_dir)
    return found->pw_dir;
  return "";
}

fs::path resolve_data_dir(const fs::path& configured,
                          const std::map<std::string, std::string>& environment) {
  auto text = configured.string();
  if (text.empty() && geteuid() == 0) return "/var/lib/hookd";
  if (text.empty() || text == "~" || text.starts_with("~/")) {
    auto home = home_directory(environment);
    if (home.empty())
      throw config_error(
          "configuration key 'data_dir' (HOOKD_DATA_DIR): not set and the home directory is "
          "unknown; set HOOKD_DATA_DIR");
    if (text.empty()) return fs::path(home) / ".local/share/hookd";
    return fs::path(home) / text.substr(std::min<std::size_t>(2, text.size()));
  }
  return fs::absolute(configured);  // a relative directory means one thing for the whole run
}

}  // namespace

config load_config(const config_sources& sources) {
  config c;
  c.retry_schedule = default_retry_schedule();
  if (sources.file) apply_file(c, *sources.file);
  auto credentials = sources.credentials_directory;
  if (!credentials)
    if (auto it = sources.environment.find("CREDENTIALS_DIRECTORY");
        it != sources.environment.end() && !it->second.empty())
      credentials = it->second;
  if (credentials) apply_credentials(c, *credentials);
  apply_environment(c, sources.environment);
  c.data_dir = resolve_data_dir(c.data_dir, sources.environment);
  return c;
}

std::map<std::string, std::string> process_environment() {
  std::map<std::string, std::string> environment;
  for (char** entry = environ; entry && *entry; ++entry) {
    std::string_view text(*entry);
    auto equals = text.find('=');
    if (equals == std::string_view::npos) continue;
    environment.emplace(text.substr(0, equals), text.substr(equals + 1));
  }
  return environment;
}

std::vector<double> default_retry_schedule() {
  std::vector<double> delays;
  double minutes = 1, next = 2;  // Fibonacci minutes: 1, 2, 3, 5, 8, 13, ...
  for (int i = 0; i < 20; ++i) {
    delays.push_back(60 * minutes);
    minutes = std::exchange(next, minutes + next);
  }
  return delays;
}

}  // namespace hookd
