// HiPPO operators (state-spaces/s4 `src/models/hippo/hippo.py` `transition`; the LTI `HiPPO` module of
// `src/models/hippo/visualizations.py` for the discretisation and the reconstruction basis). The `hippo` layer is
// the discretised projection x_t = dA x_{t−1} + dB u_t per channel, output = the N coefficients x_t of each channel;
// dA, dB are the tensors the reference module saves (its buffers `dA` [N, N], `dB` [N]). See ssmstream/hippo.hpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on Eigen's AVX-512 paths (false positives;
#pragma GCC diagnostic ignored "-Wuninitialized"        // the complex ones also trip -Wuninitialized at -O2 -g)
#include "ssmstream/hippo.hpp"

#include <Eigen/Dense>
#include <unsupported/Eigen/MatrixFunctions>

#include <cmath>
#include <nlohmann/json.hpp>

#include "layers/layer.hpp"
#include "layers/lti_conv.hpp"
#include "ssmstream/error.hpp"
#include "ssmstream/tensor_file.hpp"

namespace ssm {

namespace detail {

namespace {

class Hippo final : public Layer {
public:
    std::string name, measure, disc;
    std::size_t C = 1, N = 0;
    double dt = 0;
    std::vector<float> dA, dB;  // [N][N] row-major, [N]

    std::size_t in_width() const noexcept override { return C; }
    std::size_t out_width() const noexcept override { return C * N; }
    std::size_t state_size() const noexcept override { return C * N; }
    std::size_t param_count() const noexcept override { return N * N + N; }
    std::string describe() const override {
        return "hippo '" + name + "' measure=" + (measure.empty() ? "?" : measure) + " N=" + std::to_string(N) +
               " channels=" + std::to_string(C) + (dt > 0 ? " dt=" + std::to_string(dt) : "") +
               (disc.empty() ? "" : " disc=" + disc);
    }

    // x ← dA x + dB u for each frame and channels [c0, c1); the new state is the output row (rows of C·N). Each
    // coefficient is one dot product in a fixed order, so any blocking is bit-identical to stepping.
    void scan(std::size_t c0, std::size_t c1, const float* in, float* out, std::size_t frames, float* state) const noexcept {
        const std::size_t W = C * N;
        for (std::size_t c = c0; c < c1; ++c) {
            for (std::size_t t = 0; t < frames; ++t) {
                const float* x = (t == 0 ? state : out + (t - 1) * W) + c * N;
                float* cur = out + t * W + c * N;
                const float u = in[t * C + c];
                for (std::size_t i = 0; i < N; ++i) {
                    const float* row = dA.data() + i * N;
                    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
                    for (std::size_t j = 0; j < N; ++j) acc += row[j] * x[j];
                    cur[i] = acc + dB[i] * u;
                }
            }
            if (frames > 0) std::copy_n(out + (frames - 1) * W + c * N, N, state + c * N);
        }
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float*) const noexcept override {
        scan(0, C, in, out, frames, state);
    }

    // Batch view: LtiConv — N kernels per channel (one forward transform serves them) or the recurrence.
    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

class HippoRunner final : public LayerRunner {
public:
    HippoRunner(const Hippo& l, BatchContext& ctx) : conv_(ctx, core(l), l.describe()) {}
    static LtiCore core(const Hippo& l) {
        LtiCore c;
        c.channels = l.C;
        c.fan = l.N;
        c.state_size = l.state_size();
        c.recurrence_ns = 0.17 * static_cast<double>(l.N * l.N) + 2.0;  // bench/run_lti_b.sh: 684 ns at N = 64
        c.scan = [&l](std::size_t c0, std::size_t c1, const float* in, float* y, std::size_t f, float* st) { l.scan(c0, c1, in, y, f, st); };
        return c;
    }
    void run(const float* in, float* out, std::size_t frames) override { conv_.run(in, out, frames); }
    void reset() override { conv_.reset(); }
    void save(float* dst) const override { conv_.save(dst); }
    void load(const float* src) override { conv_.load(src); }
    void collect_plans(std::vector<LayerPlan>& plans) const override { plans.push_back(conv_.plan()); }

private:
    LtiConv conv_;
};

std::unique_ptr<LayerRunner> Hippo::make_runner(BatchContext& ctx) const { return std::make_unique<HippoRunner>(*this, ctx); }

}  // namespace

std::unique_ptr<Layer> make_hippo(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"channels", "order", "measure", "dt", "discretization"});
    auto l = std::make_unique<Hippo>();
    const std::string lab = "layer " + layer_label(c);
    l->name = get_string(c, "name", "", true);
    l->C = get_size(c, "channels", in_width, false);
    l->N = get_size(c, "order", 0, true);
    l->measure = get_string(c, "measure", "");
    l->disc = get_string(c, "discretization", "");
    l->dt = get_number(c, "dt", 0.0);
    if (!l->measure.empty() && l->measure != "legs" && l->measure != "legt" && l->measure != "lagt" && l->measure != "fout")
        throw ConfigError(lab + ": measure '" + l->measure + "' is not one of legs, legt, lagt, fout");
    const auto N = static_cast<std::int64_t>(l->N);
    for (double v : p.take(l->name + ".dA", {N, N})) l->dA.push_back(static_cast<float>(v));
    for (double v : p.take(l->name + ".dB", {N})) l->dB.push_back(static_cast<float>(v));
    return l;
}

}  // namespace detail

namespace hippo {

namespace {
void check_measure(const std::string& m, std::size_t N) {
    if (m != "legs" && m != "legt" && m != "lagt" && m != "fout")
        throw UsageError("HiPPO measure '" + m + "' is not one of legs, legt, lagt, fout");
    if (N < 1 || N > 1024) throw UsageError("HiPPO order must be in [1, 1024], got " + std::to_string(N));
    if (m == "fout" && N % 2 != 0) throw UsageError("HiPPO fout needs an even order (cos/sin pairs), got " + std::to_string(N));
}
}  // namespace

void transition(const std::string& m, std::size_t N, std::vector<double>& A, std::vector<double>& B) {
    check_measure(m, N);
    A.assign(N * N, 0.0);
    B.assign(N, 0.0);
    auto a = [&](std::size_t i, std::size_t j) -> double& { return A[i * N + j]; };
    if (m == "legs") {  // A = T M T⁻¹, M_ij = −((2j+1) [i ≥ j] − i δ_ij), T = diag(√(2i+1)); B = √(2i+1)
        for (std::size_t i = 0; i < N; ++i) {
            const double ri = std::sqrt(2.0 * i + 1);
            B[i] = ri;
            for (std::size_t j = 0; j <= i; ++j) {
                const double mij = (2.0 * j + 1) - (i == j ? static_cast<double>(i) : 0.0);
                a(i, j) = -ri * mij / std::sqrt(2.0 * j + 1);
            }
        }
    } else if (m == "legt") {  // A_ij = −√(2i+1)√(2j+1) · ((−1)^{i−j} if i < j else 1) / 2, B = √(2i+1) / 2
        for (std::size_t i = 0; i < N; ++i) {
            B[i] = 0.5 * std::sqrt(2.0 * i + 1);
            for (std::size_t j = 0; j < N; ++j) {
                const double sgn = i < j ? ((j - i) % 2 ? -1.0 : 1.0) : 1.0;
                a(i, j) = -0.5 * std::sqrt(2.0 * i + 1) * std::sqrt(2.0 * j + 1) * sgn;
            }
        }
    } else if (m == "lagt") {  // A = I/2 − tril(1), B = 1 (β = 1)
        for (std::size_t i = 0; i < N; ++i) {
            B[i] = 1.0;
            for (std::size_t j = 0; j <= i; ++j) a(i, j) = (i == j ? 0.5 : 0.0) - 1.0;
        }
    } else {  // fout: A = π(−diag(d, 1) + diag(d, −1)) − B Bᵀ, d = [0, 0, 1, 0, 2, …][1:], B = [1, 0, √2, 0, √2, 0, …]
        for (std::size_t i = 0; i < N; i += 2) B[i] = i == 0 ? 1.0 : std::sqrt(2.0);
        for (std::size_t k = 0; k + 1 < N; ++k) {
            // d[k] = the (k+1)-th entry of stack([0, f]).reshape(-1): f = (k+1)/2 for odd k+1, else 0
            const double d = (k + 1) % 2 == 1 ? static_cast<double>((k + 1) / 2) : 0.0;
            a(k, k + 1) = -M_PI * d;
            a(k + 1, k) = M_PI * d;
        }
        for (std::size_t i = 0; i < N; ++i)
            for (std::size_t j = 0; j < N; ++j) a(i, j) -= B[i] * B[j];
    }
}

void discretize(const Spec& s, std::vector<double>& dA, std::vector<double>& dB) {
    if (!(s.dt > 0) || !std::isfinite(s.dt)) throw UsageError("HiPPO dt must be a positive number");
    std::vector<double> A, B;
    transition(s.measure, s.order, A, B);
    const auto n = static_cast<Eigen::Index>(s.order);
    const Eigen::MatrixXd Am = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(A.data(), n, n);
    const Eigen::VectorXd Bv = Eigen::Map<const Eigen::VectorXd>(B.data(), n);
    const Eigen::MatrixXd I = Eigen::MatrixXd::Identity(n, n);
    Eigen::MatrixXd Ad;
    Eigen::VectorXd Bd;
    if (s.discretization == "zoh") {  // expm([[A, B], [0, 0]]·dt) = [[dA, dB], [0, 1]]
        Eigen::MatrixXd M = Eigen::MatrixXd::Zero(n + 1, n + 1);
        M.topLeftCorner(n, n) = Am * s.dt;
        M.topRightCorner(n, 1) = Bv * s.dt;
        const Eigen::MatrixXd E = M.exp();
        Ad = E.topLeftCorner(n, n);
        Bd = E.topRightCorner(n, 1);
    } else {  // generalised bilinear transform (scipy 'gbt'): α = 0 forward Euler, 1/2 bilinear, 1 backward
        double alpha = 0.5;
        if (s.discretization == "forward" || s.discretization == "euler") alpha = 0.0;
        else if (s.discretization == "backward" || s.discretization == "backward_diff") alpha = 1.0;
        else if (s.discretization != "bilinear")
            throw UsageError("HiPPO discretization '" + s.discretization + "' is not one of bilinear, zoh, forward, backward");
        const auto lu = (I - alpha * s.dt * Am).partialPivLu();
        Ad = lu.solve(I + (1.0 - alpha) * s.dt * Am);
        Bd = lu.solve(s.dt * Bv);
    }
    dA.resize(s.order * s.order);
    dB.resize(s.order);
    for (Eigen::Index i = 0; i < n; ++i) {
        dB[static_cast<std::size_t>(i)] = Bd(i);
        for (Eigen::Index j = 0; j < n; ++j) dA[static_cast<std::size_t>(i * n + j)] = Ad(i, j);
    }
    for (double v : dA)
        if (!std::isfinite(v)) throw UsageError("HiPPO discretisation is not finite (dt too large for this measure/order?)");
}

std::vector<std::byte> model_bytes(const Spec& s) {
    if (s.channels < 1 || s.channels > 4096) throw UsageError("HiPPO channels must be in [1, 4096]");
    std::vector<double> dA, dB;
    discretize(s, dA, dB);
    const auto N = static_cast<std::int64_t>(s.order);
    nlohmann::json layer = {{"type", "hippo"}, {"name", "hippo"}, {"channels", s.channels}, {"order", s.order},
                            {"measure", s.measure}, {"dt", s.dt}, {"discretization", s.discretization}};
    nlohmann::json cfg = {{"format", "ssmstream"}, {"version", 1},
                          {"name", "hippo-" + s.measure + "-" + std::to_string(s.order)},
                          {"description", "HiPPO-" + s.measure + " online coefficients (state-spaces/s4 hippo.py transition)"},
                          {"sample_rate", s.sample_rate}, {"layers", nlohmann::json::array({layer})}};
    return encode_safetensors({{"ssmstream", cfg.dump()}},
                              {{"hippo.dA", {N, N}, dA, DType::F64}, {"hippo.dB", {N}, dB, DType::F64}});
}

std::shared_ptr<const Model> make_model(const Spec& s) {
    return Model::from_tensor_file(TensorFile::from_bytes(model_bytes(s), "hippo-" + s.measure));
}

double window(const std::string& m) { return m == "legt" || m == "fout" ? 2.0 : 8.0; }

std::vector<double> basis(const std::string& m, std::size_t N, const std::vector<double>& s) {
    check_measure(m, N);
    std::vector<double> out(s.size() * N, 0.0);
    for (std::size_t r = 0; r < s.size(); ++r) {
        double* row = out.data() + r * N;
        const double x = s[r];
        if (!(x >= 0)) continue;
        if (m == "legs" || m == "legt") {
            // √(2n+1) (−1)^n P_n(z), z = 1 − 2e^{−s} (legs) or s − 1 on the window [0, 2] (legt); P_n by recurrence
            if (m == "legt" && x > 2.0) continue;
            const double z = m == "legs" ? 1.0 - 2.0 * std::exp(-x) : x - 1.0;
            double p0 = 1.0, p1 = z;
            for (std::size_t n = 0; n < N; ++n) {
                const double pn = n == 0 ? p0 : (n == 1 ? p1 : 0.0);
                double val = pn;
                if (n >= 2) {
                    const double k = static_cast<double>(n);
                    val = ((2 * k - 1) * z * p1 - (k - 1) * p0) / k;
                    p0 = p1;
                    p1 = val;
                }
                row[n] = std::sqrt(2.0 * n + 1) * (n % 2 ? -1.0 : 1.0) * val;
            }
        } else if (m == "lagt") {  // L_n(s) e^{−s/2}, Laguerre by recurrence
            double l0 = 1.0, l1 = 1.0 - x;
            const double w = std::exp(-x / 2);
            for (std::size_t n = 0; n < N; ++n) {
                double val = n == 0 ? l0 : l1;
                if (n >= 2) {
                    const double k = static_cast<double>(n);
                    val = ((2 * k - 1 - x) * l1 - (k - 1) * l0) / k;
                    l0 = l1;
                    l1 = val;
                }
                row[n] = val * w;
            }
        } else {  // fout: σ = s/2 on [0, 1]: [1, 0, √2 cos 2πσ, √2 sin 2πσ, √2 cos 4πσ, …]
            if (x > 2.0) continue;
            const double sg = x / 2;
            for (std::size_t n = 0; n < N; ++n) {
                const double k = static_cast<double>(n / 2);
                row[n] = n == 0 ? 1.0 : std::sqrt(2.0) * (n % 2 ? std::sin(2 * M_PI * k * sg) : std::cos(2 * M_PI * k * sg));
            }
        }
    }
    return out;
}

}  // namespace hippo

}  // namespace ssm
