#pragma once
// Test support: random native models built in memory, signals, and comparisons.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ssmstream/ssmstream.hpp"

namespace ssm::test {

struct S4DModelSpec {
    std::size_t d_input = 1, d_output = 1, d_model = 16, n_layers = 2, d_state = 32;
    bool prenorm = false;
    std::string disc = "zoh";
    std::string activation = "gelu";
    std::string output = "glu";
    double sample_rate = 16000;
    double dt_min = 0.001, dt_max = 0.1;
    std::uint32_t seed = 1;
};

/** The bytes of a native model file with random weights shaped like the S4 example model. */
std::vector<std::byte> make_s4d_model_bytes(const S4DModelSpec& spec);
std::shared_ptr<const Model> make_s4d_model(const S4DModelSpec& spec);
/** Writes the model to a file under the test's temporary directory and returns its path. */
std::filesystem::path write_temp_model(const S4DModelSpec& spec, const std::string& name);

std::vector<float> random_signal(std::size_t frames, std::size_t channels, std::uint32_t seed, float scale = 1.0f);
double rms(const std::vector<float>& v);
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);
/** max |a − b| against a float64 reference (a golden file's `output_f64`); infinite when the sizes differ. */
double max_abs_diff64(const std::vector<float>& a, const std::vector<double>& b);

/** Streams `in` through a fresh Stream in blocks of `block` frames. */
std::vector<float> run_stream(const std::shared_ptr<const Model>& m, const std::vector<float>& in, std::size_t block);

/** Runs `in` through a fresh Batch with `options`: in one `run` call (piece 0) or in `process` calls of `piece` frames. */
std::vector<float> run_batch_with(const std::shared_ptr<const Model>& m, const std::vector<float>& in,
                                  const BatchOptions& options, std::size_t piece = 0);

std::filesystem::path temp_dir();
/** ../shared/data, or empty if absent. */
std::filesystem::path shared_data();

}  // namespace ssm::test
