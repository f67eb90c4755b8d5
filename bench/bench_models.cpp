#include "bench_models.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

namespace ssm::bench {

namespace {

struct Builder {
    std::mt19937_64 rng;
    std::vector<TensorData> tensors;
    explicit Builder(std::uint32_t seed) : rng(seed) {}

    double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng); }
    double normal() { return std::normal_distribution<double>(0.0, 1.0)(rng); }

    template <class Gen>
    void tensor(const std::string& name, std::vector<std::int64_t> shape, Gen gen) {
        std::size_t n = 1;
        for (auto d : shape) n *= static_cast<std::size_t>(d);
        TensorData t{name, std::move(shape), std::vector<double>(n), DType::F32};
        for (std::size_t i = 0; i < n; ++i) t.values[i] = gen(i);
        tensors.push_back(std::move(t));
    }

    nlohmann::json linear(const std::string& name, std::size_t in, std::size_t out) {
        const double k = 1.0 / std::sqrt(static_cast<double>(in));
        const auto i64 = [](std::size_t v) { return static_cast<std::int64_t>(v); };
        tensor(name + ".weight", {i64(out), i64(in)}, [&](std::size_t) { return (2 * uniform() - 1) * k; });
        tensor(name + ".bias", {i64(out)}, [&](std::size_t) { return (2 * uniform() - 1) * k; });
        return {{"type", "linear"}, {"name", name}, {"in", in}, {"out", out}};
    }

    // S4D-Lin initialisation: A = -1/2 + i·π·n, log-uniform dt, C ~ N(0, 1/2) complex.
    nlohmann::json s4d(const std::string& name, const S4DParams& p) {
        const auto H = static_cast<std::int64_t>(p.H), N2 = static_cast<std::int64_t>(p.N / 2);
        const double lo = std::log(p.dt_min), hi = std::log(p.dt_max);
        tensor(name + ".D", {H}, [&](std::size_t) { return normal(); });
        tensor(name + ".kernel.log_dt", {H}, [&](std::size_t) { return lo + uniform() * (hi - lo); });
        tensor(name + ".kernel.C", {H, N2, 2}, [&](std::size_t) { return normal() * std::sqrt(0.5); });
        tensor(name + ".kernel.log_A_real", {H, N2}, [&](std::size_t) { return std::log(0.5); });
        tensor(name + ".kernel.A_imag", {H, N2}, [&](std::size_t i) { return M_PI * static_cast<double>(i % static_cast<std::size_t>(N2)); });
        if (p.output != "none") {
            const std::int64_t ow = p.output == "glu" ? 2 * H : H;
            const double k = 1.0 / std::sqrt(static_cast<double>(H));
            tensor(name + ".output_linear.0.weight", {ow, H, 1}, [&](std::size_t) { return (2 * uniform() - 1) * k; });
            tensor(name + ".output_linear.0.bias", {ow}, [&](std::size_t) { return (2 * uniform() - 1) * k; });
        }
        return {{"type", "s4d"}, {"name", name}, {"d_model", p.H}, {"d_state", p.N}, {"disc", "zoh"},
                {"activation", p.activation}, {"output", p.output}};
    }

    std::vector<std::byte> encode(const nlohmann::json& layers, double rate, const std::string& name) {
        const nlohmann::json cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", name}, {"sample_rate", rate}, {"layers", layers}};
        return encode_safetensors({{"ssmstream", cfg.dump()}}, tensors);
    }
};

std::shared_ptr<const Model> load(const std::vector<std::byte>& bytes, const char* label) {
    return Model::from_tensor_file(TensorFile::from_bytes(bytes, label));
}

}  // namespace

std::vector<std::byte> single_s4d_bytes(const S4DParams& p) {
    Builder b(p.seed);
    nlohmann::json layers = nlohmann::json::array({b.s4d("s4", p)});
    return b.encode(layers, 0, "bench-s4d-layer");
}

std::shared_ptr<const Model> single_s4d(const S4DParams& p) { return load(single_s4d_bytes(p), "bench-s4d-layer"); }

std::vector<std::byte> audio_model_bytes(const S4DParams& p, std::size_t blocks, double sample_rate) {
    Builder b(p.seed);
    nlohmann::json layers = nlohmann::json::array();
    layers.push_back(b.linear("encoder", 1, p.H));
    const auto H = static_cast<std::int64_t>(p.H);
    for (std::size_t i = 0; i < blocks; ++i) {
        const std::string norm = "norms." + std::to_string(i);
        b.tensor(norm + ".weight", {H}, [&](std::size_t) { return 1.0; });
        b.tensor(norm + ".bias", {H}, [&](std::size_t) { return 0.0; });
        nlohmann::json body = nlohmann::json::array({b.s4d("s4_layers." + std::to_string(i), p)});
        layers.push_back({{"type", "residual"}, {"prenorm", true},
                          {"norm", {{"type", "layernorm"}, {"name", norm}, {"dim", p.H}}}, {"body", body}});
    }
    layers.push_back(b.linear("decoder", p.H, 1));
    return b.encode(layers, sample_rate, "bench-audio-s4d");
}

std::shared_ptr<const Model> audio_model(const S4DParams& p, std::size_t blocks, double sample_rate) {
    return load(audio_model_bytes(p, blocks, sample_rate), "bench-audio-s4d");
}

void fill_noise(float* x, std::size_t n, std::uint64_t seed, float scale) {
    std::uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (std::size_t i = 0; i < n; ++i) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = scale * (static_cast<float>(s >> 40) * (2.0f / 16777216.0f) - 1.0f);
    }
}

}  // namespace ssm::bench
