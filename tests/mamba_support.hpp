#pragma once
// Test support for the selective-SSM families: random signal models (Linear encoder → Mamba or Mamba-2 blocks →
// Linear decoder) as native files built in memory, and the golden checkpoint directories.
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "ssmstream/checkpoint.hpp"
#include "support.hpp"

namespace ssm::test {

struct MambaSignalSpec {
    std::string family = "mamba";  // or "mamba2"
    std::size_t d_in = 2, d_out = 3, d_model = 16, n_layers = 2, d_state = 8, d_conv = 4, expand = 2;
    std::size_t head_dim = 8, n_groups = 2, chunk_size = 16;
    bool falcon = false;
    std::uint32_t seed = 1;
};

inline std::vector<std::byte> make_mamba_signal_bytes(const MambaSignalSpec& s) {
    using nlohmann::json;
    std::mt19937 rng(s.seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::vector<TensorData> t;
    auto add = [&](const std::string& name, std::vector<std::int64_t> shape, auto gen) {
        std::size_t n = 1;
        for (auto d : shape) n *= static_cast<std::size_t>(d);
        std::vector<double> v(n);
        for (std::size_t i = 0; i < n; ++i) v[i] = gen(i);
        t.push_back({name, std::move(shape), std::move(v), DType::F32});
    };
    const auto D = static_cast<std::int64_t>(s.d_model), E = static_cast<std::int64_t>(s.expand * s.d_model),
               N = static_cast<std::int64_t>(s.d_state), K = static_cast<std::int64_t>(s.d_conv);
    auto w = [&](double scale) { return [&, scale](std::size_t) { return scale * nd(rng); }; };
    add("encoder.weight", {D, static_cast<std::int64_t>(s.d_in)}, w(0.5));
    add("encoder.bias", {D}, w(0.1));
    json layers = json::array();
    layers.push_back({{"type", "linear"}, {"name", "encoder"}, {"in", s.d_in}, {"out", s.d_model}});
    for (std::size_t i = 0; i < s.n_layers; ++i) {
        const std::string b = "layers." + std::to_string(i);
        add(b + ".norm.weight", {D}, [&](std::size_t) { return 1.0 + 0.1 * nd(rng); });
        json mixer;
        const std::string m = b + ".mixer.";
        if (s.family == "mamba") {
            const auto R = static_cast<std::int64_t>((s.d_model + 15) / 16);
            add(m + "in_proj.weight", {2 * E, D}, w(1.0 / std::sqrt(double(D))));
            add(m + "conv1d.weight", {E, 1, K}, w(0.4));
            add(m + "conv1d.bias", {E}, w(0.1));
            add(m + "x_proj.weight", {R + 2 * N, E}, w(1.0 / std::sqrt(double(E))));
            add(m + "dt_proj.weight", {E, R}, w(0.5));
            add(m + "dt_proj.bias", {E}, [&](std::size_t) { return std::log(std::expm1(0.01 + 0.09 * std::abs(nd(rng)))); });
            add(m + "A_log", {E, N}, [&](std::size_t i) { return std::log(1.0 + double(i % s.d_state)) + 0.2 * nd(rng); });
            add(m + "D", {E}, [&](std::size_t) { return 1.0 + 0.1 * nd(rng); });
            add(m + "out_proj.weight", {D, E}, w(1.0 / std::sqrt(double(E))));
            mixer = {{"type", "mamba"}, {"d_model", s.d_model}, {"d_inner", E}, {"d_state", s.d_state}, {"d_conv", s.d_conv},
                     {"dt_rank", R}};
            if (s.falcon) mixer["bcdt_rms_eps"] = 1e-6;
        } else {
            const auto P = static_cast<std::int64_t>(s.head_dim), G = static_cast<std::int64_t>(s.n_groups), H = E / P;
            const auto CD = E + 2 * G * N;
            add(m + "in_proj.weight", {E + CD + H, D}, w(1.0 / std::sqrt(double(D))));
            add(m + "conv1d.weight", {CD, 1, K}, w(0.4));
            add(m + "conv1d.bias", {CD}, w(0.1));
            add(m + "dt_bias", {H}, [&](std::size_t) { return std::log(std::expm1(0.01 + 0.09 * std::abs(nd(rng)))); });
            add(m + "A_log", {H}, [&](std::size_t i) { return std::log(1.0 + double(i)) + 0.2 * nd(rng); });
            add(m + "D", {H}, [&](std::size_t) { return 1.0 + 0.1 * nd(rng); });
            add(m + "norm.weight", {E}, [&](std::size_t) { return 1.0 + 0.1 * nd(rng); });
            add(m + "out_proj.weight", {D, E}, w(1.0 / std::sqrt(double(E))));
            mixer = {{"type", "mamba2"}, {"d_model", s.d_model}, {"d_inner", E}, {"d_state", s.d_state}, {"d_conv", s.d_conv},
                     {"head_dim", s.head_dim}, {"n_groups", s.n_groups}, {"chunk_size", s.chunk_size}};
        }
        mixer["name"] = b + ".mixer";
        layers.push_back({{"type", "residual"}, {"name", b}, {"body", json::array({{{"type", "rmsnorm"}, {"name", b + ".norm"}, {"dim", s.d_model}}, mixer})}});
    }
    add("norm_f.weight", {D}, [&](std::size_t) { return 1.0 + 0.1 * nd(rng); });
    layers.push_back({{"type", "rmsnorm"}, {"name", "norm_f"}, {"dim", s.d_model}});
    add("decoder.weight", {static_cast<std::int64_t>(s.d_out), D}, w(0.3));
    add("decoder.bias", {static_cast<std::int64_t>(s.d_out)}, w(0.1));
    layers.push_back({{"type", "linear"}, {"name", "decoder"}, {"in", s.d_model}, {"out", s.d_out}});
    const json cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", "signal-" + s.family}, {"sample_rate", 0}, {"layers", layers}};
    return encode_safetensors({{"ssmstream", cfg.dump()}}, t);
}

inline std::shared_ptr<const Model> make_mamba_signal_model(const MambaSignalSpec& s) {
    const auto bytes = make_mamba_signal_bytes(s);
    return Model::from_tensor_file(TensorFile::from_bytes(bytes, "signal-" + s.family));
}

inline std::filesystem::path golden_dir() { return std::filesystem::path(SSM_SOURCE_DIR) / "tests" / "golden" / "mamba"; }

}  // namespace ssm::test
