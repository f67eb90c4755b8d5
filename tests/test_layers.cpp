// Per-layer maths checked against direct float64 formulas: linear (and Conv1d k=1 weight shapes), LayerNorm,
// BatchNorm folded at load, activations, GLU, and a residual with a batchnorm.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "support.hpp"

using namespace ssm;
using namespace ssm::test;

namespace {

std::shared_ptr<const Model> build(const nlohmann::json& layers, const std::vector<TensorData>& tensors) {
    const nlohmann::json cfg = {{"format", "ssmstream"}, {"version", 1}, {"layers", layers}};
    const auto bytes = encode_safetensors({{"ssmstream", cfg.dump()}}, tensors);
    return Model::from_tensor_file(TensorFile::from_bytes(bytes, "layers-test"));
}

std::vector<double> randv(std::size_t n, std::uint32_t seed, double scale = 1.0, double offset = 0.0) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> nd;
    std::vector<double> v(n);
    for (auto& x : v) x = offset + scale * nd(rng);
    return v;
}

}  // namespace

TEST(Layers, BatchNormIsFoldedExactly) {
    const std::size_t C = 5;
    const auto w = randv(C, 1), b = randv(C, 2), mean = randv(C, 3), var = randv(C, 4, 0.2, 1.0);
    std::vector<double> var_pos(var);
    for (auto& v : var_pos) v = std::abs(v) + 0.1;
    auto m = build({{{"type", "batchnorm"}, {"name", "bn"}, {"dim", C}, {"eps", 1e-3}}},
                   {{"bn.weight", {5}, w, DType::F32}, {"bn.bias", {5}, b, DType::F32}, {"bn.running_mean", {5}, mean, DType::F32},
                    {"bn.running_var", {5}, var_pos, DType::F32}, {"bn.num_batches_tracked", {}, {10.0}, DType::F32}});
    const auto in = random_signal(50, C, 9);
    const auto out = run_stream(m, in, 16);
    for (std::size_t t = 0; t < 50; ++t)
        for (std::size_t c = 0; c < C; ++c) {
            const double ref = (in[t * C + c] - static_cast<float>(mean[c])) / std::sqrt(static_cast<float>(var_pos[c]) + 1e-3) *
                                   static_cast<float>(w[c]) + static_cast<float>(b[c]);
            EXPECT_NEAR(out[t * C + c], ref, 1e-5 * (1 + std::abs(ref)));
        }
}

TEST(Layers, LinearActivationsAndGlu) {
    const std::size_t I = 3, O = 8;
    const auto w = randv(O * I, 5), b = randv(O, 6);
    for (const char* act : {"gelu", "silu", "tanh", "relu", "sigmoid"}) {
        auto m = build({{{"type", "linear"}, {"name", "fc"}, {"in", I}, {"out", O}}, {{"type", act}}, {{"type", "glu"}}},
                       {{"fc.weight", {static_cast<std::int64_t>(O), static_cast<std::int64_t>(I), 1}, w, DType::F32},
                        {"fc.bias", {static_cast<std::int64_t>(O)}, b, DType::F32}});
        ASSERT_EQ(m->info().out_channels, O / 2);
        const auto in = random_signal(40, I, 7, 2.0f);
        const auto out = run_stream(m, in, 7);
        for (std::size_t t = 0; t < 40; ++t) {
            std::vector<double> z(O);
            for (std::size_t o = 0; o < O; ++o) {
                double s = static_cast<float>(b[o]);
                for (std::size_t i = 0; i < I; ++i) s += static_cast<float>(w[o * I + i]) * in[t * I + i];
                const std::string a = act;
                z[o] = a == "gelu" ? 0.5 * s * (1 + std::erf(s / std::sqrt(2.0)))
                     : a == "silu" ? s / (1 + std::exp(-s))
                     : a == "tanh" ? std::tanh(s)
                     : a == "relu" ? std::max(0.0, s)
                                   : 1 / (1 + std::exp(-s));
            }
            for (std::size_t o = 0; o < O / 2; ++o) {
                const double ref = z[o] / (1 + std::exp(-z[O / 2 + o]));
                EXPECT_NEAR(out[t * (O / 2) + o], ref, 2e-6 * (1 + std::abs(ref))) << act;
            }
        }
    }
}

TEST(Layers, LayerNormMatchesFormula) {
    const std::size_t C = 6;
    const auto g = randv(C, 8), b = randv(C, 9);
    auto m = build({{{"type", "layernorm"}, {"name", "ln"}, {"dim", C}}},
                   {{"ln.weight", {6}, g, DType::F32}, {"ln.bias", {6}, b, DType::F32}});
    const auto in = random_signal(30, C, 10, 3.0f);
    const auto out = run_stream(m, in, 30);
    for (std::size_t t = 0; t < 30; ++t) {
        double mu = 0, var = 0;
        for (std::size_t c = 0; c < C; ++c) mu += in[t * C + c];
        mu /= C;
        for (std::size_t c = 0; c < C; ++c) var += (in[t * C + c] - mu) * (in[t * C + c] - mu);
        var /= C;
        for (std::size_t c = 0; c < C; ++c) {
            const double ref = (in[t * C + c] - mu) / std::sqrt(var + 1e-5) * static_cast<float>(g[c]) + static_cast<float>(b[c]);
            EXPECT_NEAR(out[t * C + c], ref, 1e-5 * (1 + std::abs(ref)));
        }
    }
}

TEST(Layers, ResidualWithBatchNormPostnorm) {
    const std::size_t C = 4;
    const auto w = randv(C * C, 11, 0.5), b = randv(C, 12), g = randv(C, 13), bb = randv(C, 14), mean = randv(C, 15);
    std::vector<double> var(C, 2.0);
    auto m = build({{{"type", "residual"}, {"prenorm", false},
                     {"norm", {{"type", "batchnorm"}, {"name", "bn"}, {"dim", C}}},
                     {"body", {{{"type", "linear"}, {"name", "fc"}, {"in", C}, {"out", C}}}}}},
                   {{"fc.weight", {4, 4}, w, DType::F32}, {"fc.bias", {4}, b, DType::F32}, {"bn.weight", {4}, g, DType::F32},
                    {"bn.bias", {4}, bb, DType::F32}, {"bn.running_mean", {4}, mean, DType::F32}, {"bn.running_var", {4}, var, DType::F32}});
    const auto in = random_signal(20, C, 16);
    const auto out = run_stream(m, in, 5);
    for (std::size_t t = 0; t < 20; ++t)
        for (std::size_t o = 0; o < C; ++o) {
            double s = static_cast<float>(b[o]);
            for (std::size_t i = 0; i < C; ++i) s += static_cast<float>(w[o * C + i]) * in[t * C + i];
            const double x = in[t * C + o] + s;
            const double ref = (x - static_cast<float>(mean[o])) / std::sqrt(2.0 + 1e-5) * static_cast<float>(g[o]) + static_cast<float>(bb[o]);
            EXPECT_NEAR(out[t * C + o], ref, 1e-5 * (1 + std::abs(ref)));
        }
}
