// An independent float64 implementation of the S4 example model, written from the maths in
// docs/model-format.md (convolution view with exact erf and sigmoid), checks the engine's recurrent view.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <nlohmann/json.hpp>

#include "support.hpp"

using namespace ssm;
using namespace ssm::test;
using cd = std::complex<double>;
using Mat = std::vector<std::vector<double>>;  // [t][c]

namespace {

struct Ref {
    const TensorFile& f;
    std::vector<double> get(const std::string& n) const { return TensorFile::to_double(*f.find(n)); }

    Mat linear(const Mat& x, const std::string& name, std::size_t in, std::size_t out) const {
        const auto w = get(name + ".weight"), b = get(name + ".bias");
        Mat y(x.size(), std::vector<double>(out));
        for (std::size_t t = 0; t < x.size(); ++t)
            for (std::size_t o = 0; o < out; ++o) {
                double s = b[o];
                for (std::size_t i = 0; i < in; ++i) s += w[o * in + i] * x[t][i];
                y[t][o] = s;
            }
        return y;
    }
    Mat layernorm(const Mat& x, const std::string& name) const {
        const auto g = get(name + ".weight"), b = get(name + ".bias");
        Mat y = x;
        for (auto& row : y) {
            double m = 0, v = 0;
            for (double e : row) m += e;
            m /= static_cast<double>(row.size());
            for (double e : row) v += (e - m) * (e - m);
            v /= static_cast<double>(row.size());
            for (std::size_t i = 0; i < row.size(); ++i) row[i] = (row[i] - m) / std::sqrt(v + 1e-5) * g[i] + b[i];
        }
        return y;
    }
    Mat s4d(const Mat& u, const std::string& p, std::size_t H, std::size_t N2, bool bilinear) const {
        const auto log_dt = get(p + ".kernel.log_dt"), lar = get(p + ".kernel.log_A_real"), aim = get(p + ".kernel.A_imag"),
                   C = get(p + ".kernel.C"), D = get(p + ".D"), W = get(p + ".output_linear.0.weight"),
                   bias = get(p + ".output_linear.0.bias");
        const std::size_t L = u.size();
        Mat y(L, std::vector<double>(H));
        for (std::size_t h = 0; h < H; ++h) {
            std::vector<double> K(L, 0.0);
            const double dt = std::exp(log_dt[h]);
            for (std::size_t n = 0; n < N2; ++n) {
                const std::size_t i = h * N2 + n;
                const cd A(-std::exp(lar[i]), aim[i]), c(C[2 * i], C[2 * i + 1]);
                cd dA, dB;
                if (!bilinear) {
                    dA = std::exp(dt * A);
                    dB = (dA - 1.0) / A;
                } else {
                    dA = (1.0 + dt * A / 2.0) / (1.0 - dt * A / 2.0);
                    dB = dt / (1.0 - dt * A / 2.0);
                }
                for (std::size_t k = 0; k < L; ++k) K[k] += 2.0 * (c * dB * std::pow(dA, static_cast<double>(k))).real();
            }
            for (std::size_t t = 0; t < L; ++t) {
                double s = D[h] * u[t][h];
                for (std::size_t k = 0; k <= t; ++k) s += K[k] * u[t - k][h];
                y[t][h] = 0.5 * s * (1.0 + std::erf(s / std::sqrt(2.0)));  // GELU (exact)
            }
        }
        Mat out(L, std::vector<double>(H));
        for (std::size_t t = 0; t < L; ++t)
            for (std::size_t o = 0; o < H; ++o) {
                double a = bias[o], g = bias[H + o];
                for (std::size_t i = 0; i < H; ++i) {
                    a += W[o * H + i] * y[t][i];
                    g += W[(H + o) * H + i] * y[t][i];
                }
                out[t][o] = a / (1.0 + std::exp(-g));  // GLU
            }
        return out;
    }
};

}  // namespace

TEST(Reference, EngineMatchesFloat64ConvolutionView) {
    for (bool prenorm : {false, true})
        for (const char* disc : {"zoh", "bilinear"}) {
            S4DModelSpec spec;
            spec.prenorm = prenorm;
            spec.disc = disc;
            spec.d_input = 2;
            spec.d_output = 2;
            spec.d_model = 8;
            spec.d_state = 8;
            const auto bytes = make_s4d_model_bytes(spec);
            const auto file = TensorFile::from_bytes(bytes, "ref");
            const auto model = Model::from_tensor_file(file);
            const std::size_t L = 400;
            const auto in = random_signal(L, 2, 4);
            Ref r{file};
            Mat x(L, std::vector<double>(2));
            for (std::size_t t = 0; t < L; ++t)
                for (std::size_t c = 0; c < 2; ++c) x[t][c] = in[t * 2 + c];
            x = r.linear(x, "encoder", 2, 8);
            for (std::size_t l = 0; l < 2; ++l) {
                const std::string norm = "norms." + std::to_string(l), p = "s4_layers." + std::to_string(l);
                Mat z = prenorm ? r.layernorm(x, norm) : x;
                z = r.s4d(z, p, 8, 4, std::string(disc) == "bilinear");
                for (std::size_t t = 0; t < L; ++t)
                    for (std::size_t h = 0; h < 8; ++h) x[t][h] += z[t][h];
                if (!prenorm) x = r.layernorm(x, norm);
            }
            x = r.linear(x, "decoder", 8, 2);
            std::vector<float> ref;
            for (const auto& row : x)
                for (double v : row) ref.push_back(static_cast<float>(v));
            const auto out = run_stream(model, in, 64);
            EXPECT_LE(max_abs_diff(ref, out), 1e-4 * std::max(1.0, rms(ref))) << "prenorm " << prenorm << " disc " << disc;
        }
}
