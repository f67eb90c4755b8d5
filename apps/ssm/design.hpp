#pragma once
// `ssm design` (classic filters as native model files) and `ssm run --zero-phase` (offline forward-backward filtering).
#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>

namespace ssm::app {

struct DesignOptions {
    std::string family, type, band, output, name = "filter", then, first;
    int order = 0, harmonics = 0;
    double rate = 0, cutoff = 0, ripple = 0, attenuation = 0, freq = 0, q = 0;
    std::size_t channels = 1;
    CLI::App* command = nullptr;
};

/** Adds the `design` subcommand to `app`, its values bound to `o` (which must outlive parsing). */
CLI::App* add_design_command(CLI::App& app, DesignOptions& o);
/** Runs `ssm design`; throws ssm::UsageError for bad or inconsistent parameters (nothing is written then). */
int cmd_design(const DesignOptions& o);

struct ZeroPhaseOptions {
    std::string nonfinite = "error";
    double rate = 0;
    bool quiet = false;
};
/** `ssm run MODEL IN OUT --zero-phase`: the whole file through scipy-style sosfiltfilt of the model's cascade. */
int run_zero_phase(const std::filesystem::path& model, const std::filesystem::path& in, const std::filesystem::path& out,
                   const ZeroPhaseOptions& o);

}  // namespace ssm::app
