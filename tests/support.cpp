#include "support.hpp"

#include <cmath>
#include <nlohmann/json.hpp>
#include <unistd.h>

namespace ssm::test {

std::vector<std::byte> make_s4d_model_bytes(const S4DModelSpec& s) {
    std::mt19937 rng(s.seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::uniform_real_distribution<double> ud(0.0, 1.0);
    std::vector<TensorData> tensors;
    auto add = [&](const std::string& name, std::vector<std::int64_t> shape, auto gen) {
        std::size_t n = 1;
        for (auto d : shape) n *= static_cast<std::size_t>(d);
        TensorData t{name, shape, std::vector<double>(n), DType::F32};
        for (auto& v : t.values) v = gen();
        tensors.push_back(std::move(t));
    };
    const auto H = static_cast<std::int64_t>(s.d_model), N2 = static_cast<std::int64_t>(s.d_state / 2);
    auto lin = [&](const std::string& name, std::int64_t in, std::int64_t out) {
        const double k = 1.0 / std::sqrt(static_cast<double>(in));
        add(name + ".weight", {out, in}, [&] { return (2 * ud(rng) - 1) * k; });
        add(name + ".bias", {out}, [&] { return (2 * ud(rng) - 1) * k; });
    };
    nlohmann::json layers = nlohmann::json::array();
    lin("encoder", static_cast<std::int64_t>(s.d_input), H);
    layers.push_back({{"type", "linear"}, {"name", "encoder"}, {"in", s.d_input}, {"out", s.d_model}});
    for (std::size_t i = 0; i < s.n_layers; ++i) {
        const std::string p = "s4_layers." + std::to_string(i);
        add(p + ".D", {H}, [&] { return nd(rng); });
        add(p + ".kernel.log_dt", {H}, [&] { return std::log(s.dt_min) + ud(rng) * (std::log(s.dt_max) - std::log(s.dt_min)); });
        add(p + ".kernel.C", {H, N2, 2}, [&] { return nd(rng) * std::sqrt(0.5); });
        add(p + ".kernel.log_A_real", {H, N2}, [&] { return std::log(0.5) + 0.3 * nd(rng); });
        std::int64_t idx = 0;
        add(p + ".kernel.A_imag", {H, N2}, [&] { return M_PI * static_cast<double>((idx++) % N2) * (1.0 + 0.05 * nd(rng)); });
        if (s.output != "none") {
            const std::int64_t ow = s.output == "glu" ? 2 * H : H;
            const double k = 1.0 / std::sqrt(static_cast<double>(H));
            add(p + ".output_linear.0.weight", {ow, H, 1}, [&] { return (2 * ud(rng) - 1) * k; });
            add(p + ".output_linear.0.bias", {ow}, [&] { return (2 * ud(rng) - 1) * k; });
        }
        add("norms." + std::to_string(i) + ".weight", {H}, [&] { return 1.0 + 0.1 * nd(rng); });
        add("norms." + std::to_string(i) + ".bias", {H}, [&] { return 0.1 * nd(rng); });
        layers.push_back({{"type", "residual"},
                          {"prenorm", s.prenorm},
                          {"norm", {{"type", "layernorm"}, {"name", "norms." + std::to_string(i)}, {"dim", s.d_model}}},
                          {"body", {{{"type", "s4d"}, {"name", p}, {"d_model", s.d_model}, {"d_state", s.d_state},
                                     {"disc", s.disc}, {"activation", s.activation}, {"output", s.output}}}}});
    }
    lin("decoder", H, static_cast<std::int64_t>(s.d_output));
    layers.push_back({{"type", "linear"}, {"name", "decoder"}, {"in", s.d_model}, {"out", s.d_output}});
    const nlohmann::json cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", "random-s4d"},
                                {"sample_rate", s.sample_rate}, {"layers", layers}};
    return encode_safetensors({{"ssmstream", cfg.dump()}}, tensors);
}

std::shared_ptr<const Model> make_s4d_model(const S4DModelSpec& spec) {
    const auto bytes = make_s4d_model_bytes(spec);
    return Model::from_tensor_file(TensorFile::from_bytes(bytes, "random-s4d"));
}

std::filesystem::path temp_dir() {
    auto d = std::filesystem::temp_directory_path() / ("ssmstream-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
}

std::filesystem::path write_temp_model(const S4DModelSpec& spec, const std::string& name) {
    const auto p = temp_dir() / name;
    write_file_atomically(p, make_s4d_model_bytes(spec));
    return p;
}

std::vector<float> random_signal(std::size_t frames, std::size_t channels, std::uint32_t seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> v(frames * channels);
    for (auto& x : v) x = nd(rng);
    return v;
}

double rms(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += static_cast<double>(x) * x;
    return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double m = a.size() == b.size() ? 0.0 : INFINITY;
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
    return m;
}

double max_abs_diff64(const std::vector<float>& a, const std::vector<double>& b) {
    double m = a.size() == b.size() ? 0.0 : INFINITY;
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
    return m;
}

std::vector<float> run_stream(const std::shared_ptr<const Model>& m, const std::vector<float>& in, std::size_t block) {
    Stream s(m);
    s.prepare({m->info().sample_rate, block, 0});
    const std::size_t cin = m->info().in_channels, cout = m->info().out_channels, frames = in.size() / cin;
    std::vector<float> out(frames * cout);
    for (std::size_t t = 0; t < frames; t += block) {
        const std::size_t n = std::min(block, frames - t);
        s.process(in.data() + t * cin, out.data() + t * cout, n);
    }
    return out;
}

std::vector<float> run_batch_with(const std::shared_ptr<const Model>& m, const std::vector<float>& in,
                                  const BatchOptions& options, std::size_t piece) {
    Batch b(m, options);
    if (piece == 0) return b.run(in);
    const std::size_t cin = m->info().in_channels, cout = m->info().out_channels, frames = in.size() / cin;
    std::vector<float> out(frames * cout);
    for (std::size_t t = 0; t < frames; t += piece) {
        const std::size_t n = std::min(piece, frames - t);
        b.process(in.data() + t * cin, out.data() + t * cout, n);
    }
    return out;
}

std::filesystem::path shared_data() {
    std::filesystem::path p = SSM_SHARED_DATA;
    return std::filesystem::exists(p) ? p : std::filesystem::path{};
}

}  // namespace ssm::test
