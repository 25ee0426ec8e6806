#pragma once
// The subcommands of the hookd binary.
#include <string>

#include "daemon/config.hpp"

namespace hookd {

int run_serve(const config& cfg);
int run_migrate(const config& cfg);
int run_workspace_create(const config& cfg, const std::string& name);

}  // namespace hookd
