// hookd: virtual webhooks for APIs that have none.
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>

#include "daemon/commands.hpp"
#include "daemon/config.hpp"
#include "sources/integration_registry.hpp"

#ifndef HOOKD_VERSION
#define HOOKD_VERSION "0.0.0"
#endif

int main(int argc, char** argv) {
  CLI::App app{"hookd: virtual webhooks for APIs that have none"};
  std::string config_file;
  app.add_option("-c,--config", config_file, "YAML configuration file")->envname("HOOKD_CONFIG");
  app.require_subcommand(0, 1);
  app.fallthrough();

  auto* serve = app.add_subcommand("serve", "run the daemon (the default)");
  auto* migrate = app.add_subcommand("migrate", "apply database migrations and exit");
  auto* workspace = app.add_subcommand("workspace", "manage workspaces");
  workspace->require_subcommand(1);
  std::string workspace_name;
  auto* workspace_create = workspace->add_subcommand("create", "create a workspace; prints its API key and secret");
  workspace_create->add_option("--name", workspace_name, "workspace name")->required();
  auto* source = app.add_subcommand("source", "operate on sources");
  source->require_subcommand(1);
  hookd::source_poll_args poll_args;
  auto* source_poll = source->add_subcommand(
      "poll", "run one scan of a connection's object type; records as JSON lines on stdout");
  source_poll->add_option("--connection", poll_args.connection_id, "connection id")->required();
  source_poll->add_option("--object", poll_args.object_type, "Unified object type, e.g. crm_contact")
      ->required();
  source_poll->add_option("--since", poll_args.since, "only records changed since (ISO-8601)");
  source_poll->add_option("--filter", poll_args.filters, "key=value filter (repeatable)");
  auto* version = app.add_subcommand("version", "print the version");
  (void)serve;

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error is exit 2, like a bad configuration.
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (version->parsed()) {
    std::cout << "hookd " << HOOKD_VERSION << "\n";
    return 0;
  }
  hookd::config cfg;
  try {
    hookd::config_sources sources;
    if (!config_file.empty()) sources.file = config_file;
    sources.environment = hookd::process_environment();
    if (const char* dir = std::getenv("CREDENTIALS_DIRECTORY")) sources.credentials_directory = dir;
    cfg = hookd::load_config(sources);
  } catch (const hookd::config_error& e) {
    std::cerr << "hookd: configuration error: " << e.what() << "\n";
    return 2;
  }
  try {
    if (migrate->parsed()) return hookd::run_migrate(cfg);
    if (workspace_create->parsed()) return hookd::run_workspace_create(cfg, workspace_name);
    if (source_poll->parsed()) return hookd::run_source_poll(cfg, poll_args);
    return hookd::run_serve(cfg);
  } catch (const hookd::sources::definition_error& e) {
    std::cerr << "hookd: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "hookd: " << e.what() << "\n";
    return 1;
  }
}
