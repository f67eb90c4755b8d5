#pragma once
#include <filesystem>
#include <string>

namespace ssm::app {
struct ConvertOptions {
    std::string dtype = "f32";
    bool prenorm = false;
    std::string disc = "zoh";
    std::string activation = "gelu";
    double sample_rate = 0;
    std::string name;
};
/** Returns a one-line summary of what was written. Throws ssm::Error on any fault; `out` is untouched then. */
std::string convert_model(const std::filesystem::path& in, const std::filesystem::path& out, const ConvertOptions& o);
}  // namespace ssm::app
