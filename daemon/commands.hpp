#pragma once
// The subcommands of the hookd binary.
#include <string>
#include <vector>

#include "daemon/config.hpp"

namespace hookd {

int run_serve(const config& cfg);
int run_migrate(const config& cfg);
int run_workspace_create(const config& cfg, const std::string& name);

struct source_poll_args {
  std::string connection_id;
  std::string object_type;
  std::string since;                 // ISO-8601, optional
  std::vector<std::string> filters;  // key=value
};
// One scan: mapped records as JSON lines on stdout, a summary on stderr.
// Exit 0: complete; 3: incomplete; 2: bad arguments.
int run_source_poll(const config& cfg, const source_poll_args& args);

}  // namespace hookd
