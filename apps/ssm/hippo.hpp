#pragma once
// `ssm hippo`: a signal's online HiPPO coefficients (ssmstream/hippo.hpp) and, optionally, their reconstruction.
#include <CLI/CLI.hpp>
#include <string>

namespace ssm::app {

struct HippoOptions {
    std::string input, output, reconstruct, measure = "legs", disc = "bilinear";
    std::size_t order = 32, block = 4096;
    double dt = 0.01, delay = 0;
    bool quiet = false;
};

/** Adds the `hippo` subcommand to `app`, its values bound to `o` (which must outlive parsing). */
CLI::App* add_hippo_command(CLI::App& app, HippoOptions& o);
/** Runs `ssm hippo`; throws ssm::UsageError on bad parameters or input (nothing is written then). */
int cmd_hippo(const HippoOptions& o);

}  // namespace ssm::app
