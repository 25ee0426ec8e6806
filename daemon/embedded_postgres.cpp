// The embedded PostgreSQL cluster: initdb on first use, pg_ctl start/stop, a unix socket only.
#include "daemon/embedded_postgres.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

extern char** environ;

namespace hookd {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view superuser = "hookd";  // the cluster's superuser role (initdb -U)
constexpr std::size_t max_socket_path = 100;     // sun_path is 108 bytes; keep a margin

struct process_result {
  int status = -1;  // the exit code, or 128 + signal
  std::string output;
  bool ok() const { return status == 0; }
};

[[noreturn]] void fail(const std::string& message) { throw std::runtime_error(message); }

std::string last_lines(std::string_view text, std::size_t count) {
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  std::size_t start = text.size();
  for (std::size_t lines = 0; start > 0; --start)
    if (text[start - 1] == '\n' && ++lines == count) break;
  return std::string(text.substr(start));
}

// The children's environment: ours without PG* variables, which would change the port,
// the data directory or the socket that initdb, pg_ctl and postgres use.
std::vector<std::string> child_environment() {
  std::vector<std::string> entries;
  for (char** entry = environ; entry && *entry; ++entry)
    if (std::string_view(*entry).substr(0, 2) != "PG") entries.emplace_back(*entry);
  return entries;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (auto& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// Runs a program to completion with stdin from /dev/null and stdout and stderr captured.
// posix_spawn rather than system(): paths never pass through a shell, and it is safe in a
// threaded process. Only fds 0-2 are inherited so that a postmaster started by pg_ctl keeps
// none of hookd's sockets open, and the signal mask and dispositions are reset because hookd
// may block or ignore signals the server relies on.
process_result run(std::vector<std::string> args) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) fail(fmt::format("pipe: {}", std::strerror(errno)));

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  // A directory every user can enter: the server user cannot enter e.g. /root.
  posix_spawn_file_actions_addchdir_np(&actions, "/");

  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t no_signals, default_signals;
  sigemptyset(&no_signals);
  sigemptyset(&default_signals);
  for (int signal : {SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2})
    sigaddset(&default_signals, signal);
  posix_spawnattr_setsigmask(&attributes, &no_signals);
  posix_spawnattr_setsigdefault(&attributes, &default_signals);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  auto environment = child_environment();
  auto argv = c_strings(args);
  auto envp = c_strings(environment);
  pid_t pid = -1;
  int error = posix_spawnp(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  close(pipe_fds[1]);
  if (error != 0) {
    close(pipe_fds[0]);
    fail(fmt::format("could not run {}: {}", args[0], std::strerror(error)));
  }

  process_result result;
  std::array<char, 4096> buffer;
  for (;;) {
    ssize_t n = read(pipe_fds[0], buffer.data(), buffer.size());
    if (n > 0) result.output.append(buffer.data(), static_cast<std::size_t>(n));
    else if (n == 0 || errno != EINTR) break;
  }
  close(pipe_fds[0]);

  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return result;
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// The command as the cluster's user: runuser when hookd is root, directly otherwise.
std::vector<std::string> as_user(const std::string& user, std::vector<std::string> args) {
  if (user.empty()) return args;
  std::vector<std::string> wrapped = {"runuser", "-u", user, "--"};
  wrapped.insert(wrapped.end(), args.begin(), args.end());
  return wrapped;
}

std::string command_line(const std::vector<std::string>& args) {
  std::string line;
  for (const auto& arg : args) line += (line.empty() ? "" : " ") + arg;
  return line;
}

// Runs the command and throws with its output if it fails.
process_result run_checked(const std::vector<std::string>& args, std::string_view what) {
  auto result = run(args);
  if (!result.ok())
    fail(fmt::format("{} failed (exit code {}): {}\n{}", what, result.status,
                     command_line(args), last_lines(result.output, 20)));
  return result;
}

struct user_ids {
  std::string name;
  uid_t uid;
  gid_t gid;
};

std::optional<user_ids> find_user(const char* name, std::optional<uid_t> uid = std::nullopt) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  int error = uid ? getpwuid_r(*uid, &entry, buffer.data(), buffer.size(), &found)
                  : getpwnam_r(name, &entry, buffer.data(), buffer.size(), &found);
  if (error != 0 || !found) return std::nullopt;
  return user_ids{found->pw_name, found->pw_uid, found->pw_gid};
}

bool has_server_binaries(const fs::path& dir) {
  for (const char* name : {"initdb", "pg_ctl", "postgres"})
    if (access((dir / name).c_str(), X_OK) != 0) return false;
  return true;
}

// "15" -> {15}, "9.6" -> {9, 6}; empty when the name is not a version.
std::vector<int> version_of(const std::string& name) {
  std::vector<int> parts;
  std::istringstream in(name);
  for (std::string part; std::getline(in, part, '.');) {
    if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos) return {};
    parts.push_back(std::stoi(part));
  }
  return parts;
}

std::string find_bin_dir(const std::string& configured) {
  if (!configured.empty()) {
    if (!has_server_binaries(configured))
      fail(fmt::format("postgres_bin_dir {} does not contain initdb, pg_ctl and postgres",
                       configured));
    return configured;
  }
  std::vector<int> best_version;
  fs::path best;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    auto version = version_of(entry.path().filename().string());
    auto bin = entry.path() / "bin";
    if (!version.empty() && version > best_version && has_server_binaries(bin))
      best_version = version, best = bin;
  }
  if (best.empty())
    fail("PostgreSQL server binaries not found; install the postgresql package or set "
         "postgres_bin_dir");
  return best.string();
}

// pg_ctl hands -D and -o to /bin/sh inside double quotes, and postgresql.conf and -k take
// comma-separated lists, so these characters cannot be passed through safely.
void check_path_characters(const fs::path& dir) {
  auto text = dir.string();
  for (char c : text)
    if (std::string_view("'\"\\`$,").find(c) != std::string_view::npos ||
        static_cast<unsigned char>(c) < 0x20)
      fail(fmt::format("the data directory {} contains a character PostgreSQL's tools cannot "
                       "take safely (one of ' \" \\ ` $ , or a control character); choose "
                       "another HOOKD_DATA_DIR",
                       text));
}

void check_socket_path(const fs::path& socket_dir) {
  auto socket = (socket_dir / ".s.PGSQL.5432").string();
  if (socket.size() >= max_socket_path)
    fail(fmt::format("the PostgreSQL socket path {} is {} characters long, over the limit of {} "
                     "for unix sockets; choose a shorter HOOKD_DATA_DIR",
                     socket, socket.size(), max_socket_path - 1));
}

void make_directory(const fs::path& dir, mode_t mode) {
  if (mkdir(dir.c_str(), mode) != 0 && errno != EEXIST)
    fail(fmt::format("cannot create directory {}: {}", dir.string(), std::strerror(errno)));
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(fmt::format("{} is not a directory", dir.string()));
}

void set_mode(const fs::path& path, mode_t mode) {
  if (chmod(path.c_str(), mode) != 0)
    fail(fmt::format("cannot chmod {}: {}", path.string(), std::strerror(errno)));
}

void set_owner(const fs::path& path, const user_ids& user) {
  if (chown(path.c_str(), user.uid, user.gid) != 0)
    fail(fmt::format("cannot chown {} to {}: {}", path.string(), user.name,
                     std::strerror(errno)));
}

// Creates the data directory. As root it must be traversable by the server's user, so it gets
// o+x (search only: nothing in it can be listed, and its files keep their own modes).
void prepare_data_dir(const fs::path& data_dir, bool as_root) {
  std::error_code ec;
  if (!fs::exists(data_dir, ec)) {
    fs::create_directories(data_dir.parent_path(), ec);
    make_directory(data_dir, 0700);
    set_mode(data_dir, as_root ? 0711 : 0700);  // mkdir's mode is reduced by the umask
    return;
  }
  struct stat info {};
  if (stat(data_dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
    fail(fmt::format("the data directory {} is not a directory", data_dir.string()));
  if (as_root && info.st_uid == 0 && (info.st_mode & S_IXOTH) == 0) {
    spdlog::info("allowing the PostgreSQL user to traverse {} (chmod o+x)", data_dir.string());
    set_mode(data_dir, (info.st_mode & 07777) | S_IXOTH);
  }
}

user_ids create_system_user(const char* name) {
  spdlog::info("creating system user {} to run the embedded PostgreSQL", name);
  auto result = run({"useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                     name});
  auto user = find_user(name);  // exists also when a concurrent useradd won (exit code 9)
  if (!user)
    fail(fmt::format("could not create system user {} (useradd exit code {}): {}", name,
                     result.status, last_lines(result.output, 20)));
  return *user;
}

// As root: the owner of an existing cluster, else postgres, else a new system user hookd.
user_ids server_user(const fs::path& cluster_dir) {
  struct stat info {};
  if (stat(cluster_dir.c_str(), &info) == 0 && info.st_uid != 0) {
    if (auto owner = find_user(nullptr, info.st_uid)) return *owner;
    fail(fmt::format("{} belongs to uid {}, which has no user name; chown it to postgres",
                     cluster_dir.string(), info.st_uid));
  }
  if (auto postgres = find_user("postgres")) return *postgres;
  if (auto hookd = find_user("hookd")) return *hookd;
  return create_system_user("hookd");
}

void check_traversable(const std::string& user, const fs::path& data_dir) {
  if (!run(as_user(user, {"test", "-x", data_dir.string()})).ok())
    fail(fmt::format("the PostgreSQL user {} cannot reach the data directory {} (it or a parent "
                     "directory is not searchable by that user); choose a HOOKD_DATA_DIR that "
                     "user can reach, e.g. /var/lib/hookd",
                     user, data_dir.string()));
}

void init_cluster(const std::string& user, const std::string& bin_dir,
                  const fs::path& cluster_dir) {
  spdlog::info("initialising PostgreSQL cluster at {}", cluster_dir.string());
  std::vector<std::string> initdb = {bin_dir + "/initdb", "-D",  cluster_dir.string(),
                                     "-U", std::string(superuser), "-A", "trust", "-E", "UTF8"};
  auto with_option = [&](const char* option) {
    auto args = initdb;
    args.emplace_back(option);
    return as_user(user, args);
  };
  auto result = run(with_option("--locale=C.UTF-8"));
  if (result.ok()) return;
  // initdb empties the directory when it fails, so it can simply be run again.
  spdlog::warn("initdb with --locale=C.UTF-8 failed, retrying with --no-locale: {}",
               last_lines(result.output, 3));
  run_checked(with_option("--no-locale"), "initdb");
}

// Appended on every start if missing, so that a crash between initdb and this step can never
// leave a cluster that listens on TCP.
void ensure_settings(const fs::path& cluster_dir, const fs::path& socket_dir) {
  constexpr std::string_view marker = "# hookd: a private cluster";
  auto conf = cluster_dir / "postgresql.conf";
  std::ifstream in(conf);
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find(marker) != std::string::npos) return;
  std::ofstream out(conf, std::ios::app);
  out << "\n" << marker
      << " reachable only through its unix socket, whose directory is private,\n"
      << "# which is why trust authentication is safe.\n"
      << "listen_addresses = ''\n"
      << "unix_socket_directories = '" << socket_dir.string() << "'\n"
      << "unix_socket_permissions = 0700\n"
      << "max_connections = 100\n"
      << "shared_buffers = 128MB\n"
      << "fsync = on\n";
  out.close();
  if (!out) fail(fmt::format("cannot write {}", conf.string()));
}

std::string percent_encode(std::string_view text) {
  constexpr std::string_view unreserved = "-._~/";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || unreserved.find(static_cast<char>(c)) != std::string_view::npos)
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

std::string read_log_tail(const fs::path& log) {
  std::ifstream in(log);
  if (!in) return "(no server log at " + log.string() + ")";
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > 20) lines.pop_front();
  }
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}


// What postmaster.pid says: line 1 the pid, line 5 the socket directory, line 8 the status
// ("starting", "ready", "stopping", ...), the lines pg_ctl -w itself reads.
struct postmaster_state {
  pid_t pid = 0;
  std::string socket_dir;
  std::string status;
};

std::optional<postmaster_state> read_postmaster_pid(const fs::path& cluster_dir) {
  std::ifstream in(cluster_dir / "postmaster.pid");
  if (!in) return std::nullopt;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  postmaster_state state;
  try {
    state.pid = lines.empty() ? 0 : static_cast<pid_t>(std::stol(lines[0]));
  } catch (const std::exception&) {
    return postmaster_state{};  // being written, or damaged: not a live server
  }
  if (lines.size() >= 5) state.socket_dir = lines[4];
  if (lines.size() >= 8) state.status = std::string(lines[7].substr(0, lines[7].find(' ')));
  return state;
}

// Whether pid is a live postgres process. pg_ctl status only checks kill(pid, 0), which also
// succeeds for a zombie and for an unrelated process that reused the pid after a reboot.
bool is_live_postgres(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!std::getline(in, stat)) return false;
  auto open = stat.find('(');
  auto close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 2 >= stat.size())
    return false;
  char state = stat[close + 2];
  return stat.substr(open + 1, close - open - 1) == "postgres" && state != 'Z' && state != 'X';
}

std::optional<postmaster_state> live_postmaster(const fs::path& cluster_dir) {
  auto state = read_postmaster_pid(cluster_dir);
  if (state && is_live_postgres(state->pid)) return state;
  return std::nullopt;
}

// Lock files of a dead server: postgres refuses to start while their pid names any live
// process, so they are removed once the pid is known not to be a postgres.
void remove_stale_lock_files(const fs::path& cluster_dir, const fs::path& socket_dir) {
  std::error_code ec;
  if (!fs::exists(cluster_dir / "postmaster.pid", ec)) return;
  spdlog::info("removing the stale postmaster.pid of a PostgreSQL that is no longer running");
  fs::remove(cluster_dir / "postmaster.pid", ec);
  fs::remove(socket_dir / ".s.PGSQL.5432.lock", ec);
}

// A server left running (e.g. hookd was killed) may still be starting or recovering.
void wait_until_ready(const fs::path& cluster_dir, const fs::path& socket_dir) {
  using namespace std::chrono;
  for (auto deadline = steady_clock::now() + seconds(60);; std::this_thread::sleep_for(100ms)) {
    auto state = live_postmaster(cluster_dir);
    if (!state) fail(fmt::format("the PostgreSQL server on {} stopped while hookd was waiting "
                                 "for it; see {}",
                                 cluster_dir.string(), (cluster_dir / "server.log").string()));
    if (state->status == "ready") {
      if (fs::path(state->socket_dir) != socket_dir)
        fail(fmt::format("a PostgreSQL server is already running on {} with its socket in {} "
                         "instead of {}; stop it with pg_ctl stop -D {}",
                         cluster_dir.string(), state->socket_dir, socket_dir.string(),
                         cluster_dir.string()));
      return;
    }
    if (steady_clock::now() > deadline)
      fail(fmt::format("the PostgreSQL server already running on {} is not ready after 60 s "
                       "(status \"{}\"); see {}",
                       cluster_dir.string(), state->status,
                       (cluster_dir / "server.log").string()));
  }
}

}  // namespace

std::unique_ptr<embedded_postgres> embedded_postgres::start(const options& opts) {
  if (opts.data_dir.empty()) fail("the embedded PostgreSQL needs a data directory");
  std::unique_ptr<embedded_postgres> pg(new embedded_postgres());
  pg->bin_dir_ = find_bin_dir(opts.bin_dir);

  auto data_dir = fs::absolute(opts.data_dir).lexically_normal();
  if (!data_dir.has_filename()) data_dir = data_dir.parent_path();  // drop a trailing /
  check_path_characters(data_dir);
  pg->cluster_dir_ = data_dir / "postgres";
  auto socket_dir = pg->cluster_dir_ / "run";
  check_socket_path(socket_dir);

  bool as_root = geteuid() == 0;
  prepare_data_dir(data_dir, as_root);
  std::optional<user_ids> user;
  if (as_root) {
    user = server_user(pg->cluster_dir_);
    pg->run_as_ = user->name;
    check_traversable(pg->run_as_, data_dir);
  }

  // initdb needs an empty directory, so the socket directory is made inside it afterwards.
  make_directory(pg->cluster_dir_, 0700);
  if (user) set_owner(pg->cluster_dir_, *user);
  if (!fs::exists(pg->cluster_dir_ / "PG_VERSION"))
    init_cluster(pg->run_as_, pg->bin_dir_, pg->cluster_dir_);
  ensure_settings(pg->cluster_dir_, socket_dir);
  make_directory(socket_dir, 0700);
  set_mode(socket_dir, 0700);
  if (user) set_owner(socket_dir, *user);

  pg->url_ = fmt::format("postgresql:///postgres?host={}&user={}",
                         percent_encode(socket_dir.string()), superuser);

  auto cluster = pg->cluster_dir_.string();
  if (live_postmaster(pg->cluster_dir_)) {
    spdlog::info("reusing the PostgreSQL server already running on {}", cluster);
    wait_until_ready(pg->cluster_dir_, socket_dir);
    pg->running_ = true;
    return pg;
  }
  remove_stale_lock_files(pg->cluster_dir_, socket_dir);

  spdlog::info("starting PostgreSQL on {} (socket in {})", cluster, socket_dir.string());
  auto log = pg->cluster_dir_ / "server.log";
  // -h '' and -k repeat postgresql.conf so that they also hold for a relocated data dir; the
  // path is single-quoted for the shell pg_ctl runs (check_path_characters rules out ').
  auto server_options = fmt::format("-h '' -k '{}'", socket_dir.string());
  auto result = run(as_user(pg->run_as_, {pg->bin_dir_ + "/pg_ctl", "start", "-w", "-t", "60",
                                          "-D", cluster, "-l", log.string(), "-o",
                                          server_options}));
  if (!result.ok())
    fail(fmt::format("could not start the embedded PostgreSQL on {} (pg_ctl exit code {}):\n{}\n"
                     "last lines of {}:\n{}",
                     cluster, result.status, last_lines(result.output, 20), log.string(),
                     read_log_tail(log)));
  pg->running_ = true;
  return pg;
}

embedded_postgres::~embedded_postgres() {
  try {
    stop();
  } catch (const std::exception& e) {
    spdlog::error("stopping the embedded PostgreSQL: {}", e.what());
  } catch (...) {
    spdlog::error("stopping the embedded PostgreSQL failed");
  }
}

void embedded_postgres::stop() {
  if (!running_) return;
  auto pg_ctl = bin_dir_ + "/pg_ctl";
  auto cluster = cluster_dir_.string();
  spdlog::info("stopping PostgreSQL on {}", cluster);
  auto result = run(as_user(run_as_, {pg_ctl, "stop", "-w", "-m", "fast", "-D", cluster}));
  // Stopped by someone else in the meantime is as good as stopped by us.
  if (!result.ok() && live_postmaster(cluster_dir_))
    fail(fmt::format("pg_ctl stop failed on {} (exit code {}): {}", cluster, result.status,
                     last_lines(result.output, 20)));
  running_ = false;
}

}  // namespace hookd
