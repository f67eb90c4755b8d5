#pragma once
// Random S4D models for the benchmarks, built in memory (weights shaped and distributed like the S4 example
// model's initialisation; the values do not matter for speed, only the shapes and the kernel decay do).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ssmstream/ssmstream.hpp"

namespace ssm::bench {

struct S4DParams {
    std::size_t H = 64, N = 64;         ///< d_model, d_state (N even: N/2 complex states)
    std::string activation = "gelu";
    std::string output = "glu";         ///< "glu", "linear" or "none"
    double dt_min = 0.001, dt_max = 0.1; ///< log-uniform step sizes; dt_min sets the slowest decay (FFT kernel length)
    std::uint32_t seed = 1;
};

/** A model whose layers list is a single s4d layer: H channels in, H out. */
std::vector<std::byte> single_s4d_bytes(const S4DParams& p);
std::shared_ptr<const Model> single_s4d(const S4DParams& p);

/** The "realistic audio model": linear encoder 1→H, `blocks` residual (pre-norm LayerNorm) S4D blocks, decoder H→1. */
std::vector<std::byte> audio_model_bytes(const S4DParams& p, std::size_t blocks, double sample_rate = 16000);
std::shared_ptr<const Model> audio_model(const S4DParams& p, std::size_t blocks, double sample_rate = 16000);

/** "fft M=… / recurrence" for each non-pointwise layer of a Batch's plan (a benchmark label). */
inline std::string plan_label(const Batch& b) {
    std::string s;
    for (const auto& p : b.plan()) {
        if (p.backend == "pointwise") continue;
        if (!s.empty()) s += ",";
        s += p.backend == "fft" ? "fft(Lk=" + std::to_string(p.kernel_length) + ",M=" + std::to_string(p.fft_size) + ")" : p.backend;
    }
    return s;
}

/** Deterministic pseudo-random noise (xorshift), scaled to ±scale. */
void fill_noise(float* x, std::size_t n, std::uint64_t seed, float scale = 0.5f);

}  // namespace ssm::bench
