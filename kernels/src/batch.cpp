// ssm::cuda::Batch: the model's layer graph rebuilt on the GPU from its config and weights.
//
// The core library's layers are internal to it (and must stay free of CUDA), so this backend reads the same native
// file: the config JSON the Model was built from (already validated by Model::load, so only what the GPU needs is
// re-read here) and the tensors by the names the layers use. The S4D discretisation below repeats s4d.cpp's maths
// in double; the parity tests (tests/cuda/) hold the two together.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <nlohmann/json.hpp>

#include "common.hpp"
#include "fft_conv.hpp"
#include "mamba_ops.hpp"
#include "ops.hpp"
#include "ssmstream/cuda.hpp"
#include "ssmstream/error.hpp"

namespace ssm::cuda {

namespace detail {
namespace {

using nlohmann::json;
using cd = std::complex<double>;

void check_blas(cublasStatus_t s, const char* what, const char* file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS) throw_cuda(what, static_cast<int>(s), cublasGetStatusString(s), file, line);
}
#define SSM_CUBLAS_CHECK(expr) ::ssm::cuda::detail::check_blas((expr), #expr, __FILE__, __LINE__)

std::string label(const json& c) {
    std::string s = c.contains("name") && c["name"].is_string() ? "'" + c["name"].get<std::string>() + "' " : "";
    return s + "(" + (c.contains("type") && c["type"].is_string() ? c["type"].get<std::string>() : "?") + ")";
}

/** The weights of one file, by name, as float or double host vectors. */
struct Weights {
    const TensorFile& file;
    const TensorView& view(const std::string& name) const {
        const auto* t = file.find(name);
        if (t == nullptr) throw FormatError(file.label() + ": missing tensor '" + name + "'");
        return *t;
    }
    std::vector<float> f32(const std::string& name) const { return TensorFile::to_float(view(name)); }
    std::vector<double> f64(const std::string& name) const { return TensorFile::to_double(view(name)); }
    bool has(const std::string& name) const { return file.find(name) != nullptr; }
};

DeviceArray<float> upload(const std::vector<float>& v) {
    DeviceArray<float> d(v.size());
    if (!v.empty()) d.upload(v.data(), v.size());
    return d;
}

struct Ctx {
    cublasHandle_t blas = nullptr;
    std::size_t chunk = 0;
    const ssm::cuda::BatchOptions& options;
    const Weights& w;
};

class Node {
public:
    virtual ~Node() = default;
    std::size_t in_w = 0, out_w = 0, max_w = 0;
    /** `frames` ≤ chunk rows in → out (distinct device buffers, frame-major). */
    virtual void run(const float* in, float* out, std::size_t frames) = 0;
    virtual void reset() {}
    virtual void collect_plans(std::vector<LayerPlan>& plans) const = 0;
};

// y = x · Wᵀ + b through cuBLAS: a row-major [T][in] matrix is the column-major [in][T] one, so Yᵀ = W·Xᵀ with W
// stored as the column-major [out][in] matrix, i.e. the transposed weights wt[i·out + o].
void gemm(cublasHandle_t h, const float* x, std::size_t frames, std::size_t in, const float* wt, std::size_t out, float* y) {
    const float one = 1.0f, zero = 0.0f;
    SSM_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(frames), static_cast<int>(in),
                                 &one, wt, static_cast<int>(out), x, static_cast<int>(in), &zero, y, static_cast<int>(out)));
}

/** gemm() plus the bias when there is one (an empty array: none). */
void project(cublasHandle_t h, const float* x, std::size_t frames, std::size_t in, const DeviceArray<float>& wt,
             const DeviceArray<float>& bias, std::size_t out, float* y) {
    gemm(h, x, frames, in, wt.get(), out, y);
    if (bias.size()) bias_add(y, bias.get(), frames, out);
}

std::vector<float> transposed(const std::vector<float>& w, std::size_t out, std::size_t in) {
    std::vector<float> t(w.size());
    for (std::size_t o = 0; o < out; ++o)
        for (std::size_t i = 0; i < in; ++i) t[i * out + o] = w[o * in + i];
    return t;
}

class LinearNode final : public Node {
public:
    LinearNode(const json& c, Ctx& ctx, std::size_t width) : blas_(ctx.blas), desc_("linear " + label(c)) {
        const auto name = c.at("name").get<std::string>();
        in_w = c.value("in", width);
        out_w = c.at("out").get<std::size_t>();
        max_w = std::max(in_w, out_w);
        wt_ = upload(transposed(ctx.w.f32(name + ".weight"), out_w, in_w));
        if (c.value("bias", true)) bias_ = upload(ctx.w.f32(name + ".bias"));
    }
    void run(const float* in, float* out, std::size_t frames) override {
        project(blas_, in, frames, in_w, wt_, bias_, out_w, out);
    }
    void collect_plans(std::vector<LayerPlan>& p) const override { p.push_back({desc_, "cuda-cublas", "float32 GEMM (no TF32)", 0, 0, 0}); }

private:
    cublasHandle_t blas_;
    std::string desc_;
    DeviceArray<float> wt_, bias_;
};

class LayerNormNode final : public Node {
public:
    LayerNormNode(const json& c, Ctx& ctx, std::size_t width) : desc_("layernorm " + label(c)) {
        const auto name = c.at("name").get<std::string>();
        in_w = out_w = max_w = c.value("dim", width);
        eps_ = static_cast<float>(c.value("eps", 1e-5));
        g_ = upload(ctx.w.f32(name + ".weight"));
        b_ = upload(ctx.w.f32(name + ".bias"));
    }
    void run(const float* in, float* out, std::size_t frames) override { layernorm(in, out, frames, in_w, g_.get(), b_.get(), eps_); }
    void collect_plans(std::vector<LayerPlan>& p) const override { p.push_back({desc_, "cuda-pointwise", "one warp per frame", 0, 0, 0}); }

private:
    std::string desc_;
    float eps_ = 1e-5f;
    DeviceArray<float> g_, b_;
};

class AffineNode final : public Node {  // inference BatchNorm, folded as on the CPU
public:
    AffineNode(const json& c, Ctx& ctx, std::size_t width) : desc_("batchnorm " + label(c)) {
        const auto name = c.at("name").get<std::string>();
        in_w = out_w = max_w = c.value("dim", width);
        const double eps = c.value("eps", 1e-5);
        const auto g = ctx.w.f64(name + ".weight"), b = ctx.w.f64(name + ".bias");
        const auto mean = ctx.w.f64(name + ".running_mean"), var = ctx.w.f64(name + ".running_var");
        std::vector<float> a(in_w), off(in_w);
        for (std::size_t i = 0; i < in_w; ++i) {
            const double s = g[i] / std::sqrt(var[i] + eps);
            a[i] = static_cast<float>(s);
            off[i] = static_cast<float>(b[i] - mean[i] * s);
        }
        a_ = upload(a);
        c_ = upload(off);
    }
    void run(const float* in, float* out, std::size_t frames) override { affine(in, out, frames, in_w, a_.get(), c_.get()); }
    void collect_plans(std::vector<LayerPlan>& p) const override { p.push_back({desc_, "cuda-pointwise", "folded affine", 0, 0, 0}); }

private:
    std::string desc_;
    DeviceArray<float> a_, c_;
};

class ActNode final : public Node {
public:
    ActNode(Act act, std::size_t width, std::string desc) : act_(act), desc_(std::move(desc)) { in_w = out_w = max_w = width; }
    void run(const float* in, float* out, std::size_t frames) override { activation(in, out, frames * in_w, act_); }
    void collect_plans(std::vector<LayerPlan>& p) const override { p.push_back({desc_, "cuda-pointwise", "element-wise", 0, 0, 0}); }

private:
    Act act_;
    std::string desc_;
};

class GluNode final : public Node {
public:
    explicit GluNode(std::size_t width) {
        in_w = max_w = width;
        out_w = width / 2;
    }
    void run(const float* in, float* out, std::size_t frames) override { glu(in, out, frames, out_w, nullptr); }
    void collect_plans(std::vector<LayerPlan>& p) const override { p.push_back({"glu", "cuda-pointwise", "element-wise", 0, 0, 0}); }
};

// S4D (see lib/src/layers/s4d.cpp for the maths): y = K ∗ u + D·u by overlap-save FFT convolution, then the
// activation (fused into the convolution's output pass), then the output 1×1 conv (cuBLAS) and GLU.
class S4DNode final : public Node {
public:
    S4DNode(const json& c, Ctx& ctx, std::size_t width) : blas_(ctx.blas) {
        const auto name = c.at("name").get<std::string>();
        H_ = c.value("d_model", width);
        N2_ = c.value("d_state", std::size_t{64}) / 2;
        in_w = out_w = H_;
        const auto disc = c.value("disc", std::string("zoh"));
        const auto act = c.value("activation", std::string("gelu"));
        const auto outk = c.value("output", std::string("glu"));
        act_ = act == "gelu" ? Act::gelu : act == "silu" || act == "swish" ? Act::silu : act == "tanh" ? Act::tanh
             : act == "relu" ? Act::relu : Act::none;
        out_ = outk == "glu" ? 2 : outk == "linear" ? 1 : 0;
        max_w = out_ == 2 ? 2 * H_ : H_;
        desc_ = "s4d '" + name + "' H=" + std::to_string(H_) + " N=" + std::to_string(2 * N2_) + " disc=" + disc +
                " activation=" + act + " output=" + outk;

        // Discretisation in double, exactly as s4d.cpp's make_s4d.
        const auto log_dt = ctx.w.f64(name + ".kernel.log_dt"), log_A_real = ctx.w.f64(name + ".kernel.log_A_real");
        const auto A_imag = ctx.w.f64(name + ".kernel.A_imag"), Cv = ctx.w.f64(name + ".kernel.C");
        const auto Bv = ctx.w.has(name + ".kernel.B") ? ctx.w.f64(name + ".kernel.B") : std::vector<double>{};
        const auto Dv = ctx.w.f64(name + ".D");
        const std::size_t n = H_ * N2_;
        std::vector<cd> dA(n), dB(n), C2(n);
        for (std::size_t h = 0; h < H_; ++h) {
            const double dt = std::exp(log_dt[h]);
            for (std::size_t k = 0; k < N2_; ++k) {
                const std::size_t i = h * N2_ + k;
                const cd A(-std::exp(log_A_real[i]), A_imag[i]);
                const cd B = Bv.empty() ? cd(1.0, 0.0) : cd(Bv[2 * i], Bv[2 * i + 1]);
                const cd dtA = dt * A;
                if (disc == "zoh") {
                    dA[i] = std::exp(dtA);
                    dB[i] = (dA[i] - 1.0) / A * B;
                } else {
                    dA[i] = (1.0 + dtA / 2.0) / (1.0 - dtA / 2.0);
                    dB[i] = dt / (1.0 - dtA / 2.0) * B;
                }
                C2[i] = 2.0 * cd(Cv[2 * i], Cv[2 * i + 1]);
            }
        }
        const std::size_t Lk = kernel_length(dA, dB, C2, Dv, ctx.options, name);
        // Taps on the device in double, then their spectra: the kernel never crosses the bus.
        std::vector<double> a(2 * n), cb(2 * n);
        for (std::size_t i = 0; i < n; ++i) {
            const cd p = C2[i] * dB[i];
            a[2 * i] = dA[i].real();
            a[2 * i + 1] = dA[i].imag();
            cb[2 * i] = p.real();
            cb[2 * i + 1] = p.imag();
        }
        DeviceArray<double> da(2 * n), dcb(2 * n), dd(H_);
        da.upload(a.data(), a.size());
        dcb.upload(cb.data(), cb.size());
        dd.upload(Dv.data(), H_);
        DeviceArray<float> taps(H_ * Lk);
        s4d_taps(da.get(), dcb.get(), dd.get(), H_, N2_, Lk, taps.get());
        conv_ = std::make_unique<OverlapSave>(H_, Lk, ctx.chunk);
        conv_->set_kernel(taps.get());
        SSM_CUDA_CHECK(cudaDeviceSynchronize());  // taps and staging freed at scope end: finish with them first
        xc_ = DeviceArray<float>(H_ * ctx.chunk);
        yc_ = DeviceArray<float>(H_ * ctx.chunk);
        if (out_ != 0) {
            const std::size_t ow = out_ == 2 ? 2 * H_ : H_;
            wt_ = upload(transposed(ctx.w.f32(name + ".output_linear.0.weight"), ow, H_));
            bias_ = upload(ctx.w.f32(name + ".output_linear.0.bias"));
            y_ = DeviceArray<float>(ctx.chunk * H_);
            if (out_ == 2) z_ = DeviceArray<float>(ctx.chunk * ow);
        }
        chunk_ = ctx.chunk;
        plan_ = {desc_, "cuda-fft", "cuFFT overlap-save, all channels and windows in one batched transform", Lk,
                 conv_->fft_size(), conv_->hop()};
    }

    void run(const float* in, float* out, std::size_t frames) override {
        to_channel_major(in, frames, H_, xc_.get(), chunk_);
        conv_->run(xc_.get(), chunk_, yc_.get(), chunk_, frames, act_);
        float* y = out_ == 0 ? out : y_.get();
        to_frame_major(yc_.get(), chunk_, frames, H_, y, Act::none);
        if (out_ == 1) {
            gemm(blas_, y, frames, H_, wt_.get(), H_, out);
            bias_add(out, bias_.get(), frames, H_);
        } else if (out_ == 2) {
            gemm(blas_, y, frames, H_, wt_.get(), 2 * H_, z_.get());
            glu(z_.get(), out, frames, H_, bias_.get());
        }
    }
    void reset() override { conv_->reset(); }
    void collect_plans(std::vector<LayerPlan>& p) const override { p.push_back(plan_); }

private:
    // Taps kept so the dropped tail ≤ tol × (‖K‖₁ + |D|) in every channel: the CPU path's rule (s4d.cpp).
    static std::size_t kernel_length(const std::vector<cd>& dA, const std::vector<cd>& dB, const std::vector<cd>& C2,
                                     const std::vector<double>& D, const ssm::cuda::BatchOptions& o, const std::string& name) {
        const std::size_t N2 = dA.size() / D.size(), H = D.size(), cap = o.max_kernel;
        std::size_t need = 1;
        for (std::size_t h = 0; h < H; ++h) {
            double ref = std::abs(D[h]);
            std::vector<cd> p(N2);
            for (std::size_t n = 0; n < N2; ++n) p[n] = C2[h * N2 + n] * dB[h * N2 + n];
            for (std::size_t k = 0; k < std::min<std::size_t>(cap, 2048); ++k) {
                double s = 0;
                for (std::size_t n = 0; n < N2; ++n) {
                    s += p[n].real();
                    p[n] *= dA[h * N2 + n];
                }
                ref += std::abs(s);
            }
            auto tail = [&](double len) {
                double s = 0;
                for (std::size_t n = 0; n < N2; ++n) {
                    const double r = std::abs(dA[h * N2 + n]);
                    const double w = std::abs(C2[h * N2 + n] * dB[h * N2 + n]);
                    if (r >= 1.0) return std::numeric_limits<double>::infinity();
                    s += w * std::pow(r, len) / (1.0 - r);
                }
                return s;
            };
            const double target = o.kernel_tolerance * std::max(ref, 1e-30);
            if (tail(static_cast<double>(cap)) > target)
                throw UsageError("s4d '" + name + "': channel " + std::to_string(h) + "'s kernel decays slower than max_kernel=" +
                                 std::to_string(cap) + " taps allow; the GPU backend has no recurrent S4D path yet");
            std::size_t lo = 1, hi = cap;
            while (lo < hi) {
                const std::size_t mid = (lo + hi) / 2;
                if (tail(static_cast<double>(mid)) <= target) hi = mid; else lo = mid + 1;
            }
            need = std::max(need, lo);
        }
        return need;
    }

    cublasHandle_t blas_;
    std::size_t H_ = 0, N2_ = 0, chunk_ = 0;
    int out_ = 2;
    Act act_ = Act::gelu;
    std::string desc_;
    LayerPlan plan_;
    std::unique_ptr<OverlapSave> conv_;
    DeviceArray<float> xc_, yc_, y_, z_, wt_, bias_;
};

std::unique_ptr<Node> make_node(const json& c, Ctx& ctx, std::size_t width);

class RmsNormNode final : public Node {
public:
    RmsNormNode(const json& c, Ctx& ctx, std::size_t width) : desc_("rmsnorm " + label(c)) {
        in_w = out_w = max_w = c.value("dim", width);
        eps_ = static_cast<float>(c.value("eps", 1e-5));
        w_ = upload(ctx.w.f32(c.at("name").get<std::string>() + ".weight"));
    }
    void run(const float* in, float* out, std::size_t frames) override { rmsnorm(in, out, frames, in_w, w_.get(), eps_); }
    void collect_plans(std::vector<LayerPlan>& p) const override { p.push_back({desc_, "cuda-pointwise", "one warp per frame", 0, 0, 0}); }

private:
    std::string desc_;
    float eps_ = 1e-5f;
    DeviceArray<float> w_;
};

// Rows [r0, r0 + rows) of a PyTorch [out][in] weight, transposed for gemm() and uploaded.
DeviceArray<float> weight_rows(const std::vector<float>& w, std::size_t in, std::size_t r0, std::size_t rows) {
    const std::vector<float> part(w.begin() + static_cast<std::ptrdiff_t>(r0 * in), w.begin() + static_cast<std::ptrdiff_t>((r0 + rows) * in));
    return upload(transposed(part, rows, in));
}
std::vector<float> slice(const std::vector<float>& v, std::size_t a, std::size_t n) {
    return {v.begin() + static_cast<std::ptrdiff_t>(a), v.begin() + static_cast<std::ptrdiff_t>(a + n)};
}
// conv1d.weight [C][1][K] → [K][C] (the CPU layout), channels [c0, c0 + n).
DeviceArray<float> conv_taps(const std::vector<float>& cw, std::size_t K, std::size_t c0, std::size_t n) {
    std::vector<float> t(K * n);
    for (std::size_t c = 0; c < n; ++c)
        for (std::size_t k = 0; k < K; ++k) t[k * n + c] = cw[(c0 + c) * K + k];
    return upload(t);
}

// Mamba / FalconMamba (lib/src/layers/mamba.cpp for the maths): projections through cuBLAS, each split by output rows
// so every operand of the scan is a contiguous [T][width] array; the conv window and the scan state carried across
// calls on the device.
class MambaNode final : public Node {
public:
    MambaNode(const json& c, Ctx& ctx, std::size_t width) : blas_(ctx.blas) {
        name_ = c.at("name").get<std::string>();
        D_ = c.value("d_model", width);
        E_ = c.at("d_inner").get<std::size_t>();
        N_ = c.at("d_state").get<std::size_t>();
        K_ = c.at("d_conv").get<std::size_t>();
        R_ = c.at("dt_rank").get<std::size_t>();
        falcon_ = c.contains("bcdt_rms_eps") && !c["bcdt_rms_eps"].is_null();
        if (falcon_) eps_ = c["bcdt_rms_eps"].get<float>();
        in_w = out_w = D_;
        max_w = D_;
        const std::string p = name_ + ".";
        const auto win = ctx.w.f32(p + "in_proj.weight");
        wx_ = weight_rows(win, D_, 0, E_);
        wz_ = weight_rows(win, D_, E_, E_);
        if (c.value("bias", false)) {
            const auto b = ctx.w.f32(p + "in_proj.bias");
            bx_ = upload(slice(b, 0, E_));
            bz_ = upload(slice(b, E_, E_));
            bout_ = upload(ctx.w.f32(p + "out_proj.bias"));
        }
        conv_w_ = conv_taps(ctx.w.f32(p + "conv1d.weight"), K_, 0, E_);
        if (c.value("conv_bias", true)) conv_b_ = upload(ctx.w.f32(p + "conv1d.bias"));
        const auto wxp = ctx.w.f32(p + "x_proj.weight");
        wdt_in_ = weight_rows(wxp, E_, 0, R_);
        wB_ = weight_rows(wxp, E_, R_, N_);
        wC_ = weight_rows(wxp, E_, R_ + N_, N_);
        wdt_ = upload(transposed(ctx.w.f32(p + "dt_proj.weight"), E_, R_));
        bdt_ = upload(ctx.w.f32(p + "dt_proj.bias"));
        auto a = ctx.w.f64(p + "A_log");
        std::vector<float> A(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) A[i] = static_cast<float>(-std::exp(a[i]));
        A_ = upload(A);
        Dk_ = upload(ctx.w.f32(p + "D"));
        wout_ = upload(transposed(ctx.w.f32(p + "out_proj.weight"), D_, E_));
        const std::size_t T = ctx.chunk;
        x_ = DeviceArray<float>(T * E_);
        z_ = DeviceArray<float>(T * E_);
        xc_ = DeviceArray<float>(T * E_);
        dtr_ = DeviceArray<float>(T * R_);
        B_ = DeviceArray<float>(T * N_);
        C_ = DeviceArray<float>(T * N_);
        delta_ = DeviceArray<float>(T * E_);
        y_ = DeviceArray<float>(T * E_);
        window_ = DeviceArray<float>((K_ - 1) * E_ + 1);
        state_ = DeviceArray<float>(E_ * N_);
        reset();
    }
    void run(const float* in, float* out, std::size_t T) override {
        project(blas_, in, T, D_, wx_, bx_, E_, x_.get());
        project(blas_, in, T, D_, wz_, bz_, E_, z_.get());
        causal_conv_silu(x_.get(), E_, T, E_, K_, conv_w_.get(), conv_b_.size() ? conv_b_.get() : nullptr, window_.get(), xc_.get());
        gemm(blas_, xc_.get(), T, E_, wdt_in_.get(), R_, dtr_.get());
        gemm(blas_, xc_.get(), T, E_, wB_.get(), N_, B_.get());
        gemm(blas_, xc_.get(), T, E_, wC_.get(), N_, C_.get());
        if (falcon_) {
            rmsnorm(dtr_.get(), dtr_.get(), T, R_, nullptr, eps_);
            rmsnorm(B_.get(), B_.get(), T, N_, nullptr, eps_);
            rmsnorm(C_.get(), C_.get(), T, N_, nullptr, eps_);
        }
        gemm(blas_, dtr_.get(), T, R_, wdt_.get(), E_, delta_.get());
        selective_scan({.u = xc_.get(), .delta = delta_.get(), .A = A_.get(), .B = B_.get(), .C = C_.get(), .D = Dk_.get(),
                        .z = z_.get(), .delta_bias = bdt_.get(), .y = y_.get(), .state = state_.get(), .batch = 1, .length = T,
                        .dim = E_, .dstate = N_, .delta_softplus = true});
        project(blas_, y_.get(), T, E_, wout_, bout_, D_, out);
    }
    void reset() override {
        window_.zero();
        state_.zero();
    }
    void collect_plans(std::vector<LayerPlan>& p) const override {
        p.push_back({std::string(falcon_ ? "falcon-mamba '" : "mamba '") + name_ + "' d_inner " + std::to_string(E_) + ", d_state " +
                         std::to_string(N_),
                     "cuda-scan", "cuBLAS projections, selective-scan kernel (state in registers, carried across calls)", 0, 0, 0});
    }

private:
    cublasHandle_t blas_;
    std::string name_;
    std::size_t D_ = 0, E_ = 0, N_ = 0, K_ = 4, R_ = 1;
    bool falcon_ = false;
    float eps_ = 0.0f;
    DeviceArray<float> wx_, wz_, bx_, bz_, bout_, conv_w_, conv_b_, wdt_in_, wB_, wC_, wdt_, bdt_, A_, Dk_, wout_;
    DeviceArray<float> x_, z_, xc_, dtr_, B_, C_, delta_, y_, window_, state_;
};

// Mamba-2 (lib/src/layers/mamba2.cpp for the maths), one group of B/C: in_proj split into z, xBC and dt; the causal
// conv over x, B and C (one window each); Δ = clamp(softplus(dt + dt_bias)); the SSD kernel (tensor cores where
// headdim = d_state = 64); the gated RMSNorm; out_proj.
class Mamba2Node final : public Node {
public:
    Mamba2Node(const json& c, Ctx& ctx, std::size_t width) : blas_(ctx.blas) {
        name_ = c.at("name").get<std::string>();
        D_ = c.value("d_model", width);
        E_ = c.at("d_inner").get<std::size_t>();
        N_ = c.at("d_state").get<std::size_t>();
        K_ = c.at("d_conv").get<std::size_t>();
        P_ = c.at("head_dim").get<std::size_t>();
        H_ = E_ / P_;
        norm_ = c.value("norm", true);
        mode_ = !norm_ ? 0 : c.value("norm_before_gate", false) ? 2 : 1;
        eps_ = static_cast<float>(c.value("norm_eps", 1e-5));
        if (c.contains("dt_limit")) {
            lo_ = c["dt_limit"][0].get<float>();
            hi_ = c["dt_limit"][1].is_null() ? INFINITY : c["dt_limit"][1].get<float>();
        }
        in_w = out_w = max_w = D_;
        const std::string p = name_ + ".";
        const std::size_t CD = E_ + 2 * N_;
        const auto win = ctx.w.f32(p + "in_proj.weight");
        wz_ = weight_rows(win, D_, 0, E_);
        wx_ = weight_rows(win, D_, E_, E_);
        wB_ = weight_rows(win, D_, 2 * E_, N_);
        wC_ = weight_rows(win, D_, 2 * E_ + N_, N_);
        wdt_ = weight_rows(win, D_, E_ + CD, H_);
        if (c.value("bias", false)) {
            const auto b = ctx.w.f32(p + "in_proj.bias");
            bz_ = upload(slice(b, 0, E_));
            bx_ = upload(slice(b, E_, E_));
            bB_ = upload(slice(b, 2 * E_, N_));
            bC_ = upload(slice(b, 2 * E_ + N_, N_));
            bdt_in_ = upload(slice(b, E_ + CD, H_));
            bout_ = upload(ctx.w.f32(p + "out_proj.bias"));
        }
        const auto cw = ctx.w.f32(p + "conv1d.weight");
        cwx_ = conv_taps(cw, K_, 0, E_);
        cwB_ = conv_taps(cw, K_, E_, N_);
        cwC_ = conv_taps(cw, K_, E_ + N_, N_);
        if (c.value("conv_bias", true)) {
            const auto cb = ctx.w.f32(p + "conv1d.bias");
            cbx_ = upload(slice(cb, 0, E_));
            cbB_ = upload(slice(cb, E_, N_));
            cbC_ = upload(slice(cb, E_ + N_, N_));
        }
        dt_bias_ = upload(ctx.w.f32(p + "dt_bias"));
        const auto a = ctx.w.f64(p + "A_log");
        std::vector<float> A(H_);
        for (std::size_t h = 0; h < H_; ++h) A[h] = static_cast<float>(-std::exp(a[h]));
        A_ = upload(A);
        Dk_ = upload(ctx.w.f32(p + "D"));
        if (norm_) nw_ = upload(ctx.w.f32(p + "norm.weight"));
        wout_ = upload(transposed(ctx.w.f32(p + "out_proj.weight"), D_, E_));
        const std::size_t T = ctx.chunk, h = K_ - 1;
        for (auto* arr : {&z_, &xr_, &x_, &y_}) *arr = DeviceArray<float>(T * E_);
        for (auto* arr : {&Br_, &B_, &Cr_, &C_}) *arr = DeviceArray<float>(T * N_);
        dtr_ = DeviceArray<float>(T * H_);
        dt_ = DeviceArray<float>(T * H_);
        winx_ = DeviceArray<float>(h * E_ + 1);
        winB_ = DeviceArray<float>(h * N_ + 1);
        winC_ = DeviceArray<float>(h * N_ + 1);
        state_ = DeviceArray<float>(H_ * P_ * N_);
        reset();
    }
    void run(const float* in, float* out, std::size_t T) override {
        project(blas_, in, T, D_, wz_, bz_, E_, z_.get());
        project(blas_, in, T, D_, wx_, bx_, E_, xr_.get());
        project(blas_, in, T, D_, wB_, bB_, N_, Br_.get());
        project(blas_, in, T, D_, wC_, bC_, N_, Cr_.get());
        project(blas_, in, T, D_, wdt_, bdt_in_, H_, dtr_.get());
        const auto nb = [](const DeviceArray<float>& b) { return b.size() ? b.get() : nullptr; };
        causal_conv_silu(xr_.get(), E_, T, E_, K_, cwx_.get(), nb(cbx_), winx_.get(), x_.get());
        causal_conv_silu(Br_.get(), N_, T, N_, K_, cwB_.get(), nb(cbB_), winB_.get(), B_.get());
        causal_conv_silu(Cr_.get(), N_, T, N_, K_, cwC_.get(), nb(cbC_), winC_.get(), C_.get());
        dt_softplus(dtr_.get(), H_, T, H_, dt_bias_.get(), lo_, hi_, dt_.get());
        ssd_scan({.x = x_.get(), .dt = dt_.get(), .A = A_.get(), .B = B_.get(), .C = C_.get(), .D = Dk_.get(), .y = y_.get(),
                  .state = state_.get(), .batch = 1, .length = T, .heads = H_, .headdim = P_, .dstate = N_, .chunk = 64});
        gated_rmsnorm(y_.get(), z_.get(), E_, T, E_, E_, nb(nw_), eps_, mode_);
        project(blas_, y_.get(), T, E_, wout_, bout_, D_, out);
    }
    void reset() override {
        winx_.zero();
        winB_.zero();
        winC_.zero();
        state_.zero();
    }
    void collect_plans(std::vector<LayerPlan>& p) const override {
        p.push_back({"mamba2 '" + name_ + "' heads " + std::to_string(H_) + " x " + std::to_string(P_) + ", d_state " + std::to_string(N_),
                     "cuda-ssd", std::string("cuBLAS projections, SSD kernel in chunks of 64") + (P_ == 64 && N_ == 64 ? " on tensor cores" : ""),
                     0, 0, 0});
    }

private:
    cublasHandle_t blas_;
    std::string name_;
    std::size_t D_ = 0, E_ = 0, N_ = 0, K_ = 4, P_ = 1, H_ = 1;
    bool norm_ = true;
    int mode_ = 1;
    float eps_ = 1e-5f, lo_ = 0.0f, hi_ = INFINITY;
    DeviceArray<float> wz_, wx_, wB_, wC_, wdt_, bz_, bx_, bB_, bC_, bdt_in_, bout_, cwx_, cwB_, cwC_, cbx_, cbB_, cbC_;
    DeviceArray<float> dt_bias_, A_, Dk_, nw_, wout_;
    DeviceArray<float> z_, xr_, x_, y_, Br_, B_, Cr_, C_, dtr_, dt_, winx_, winB_, winC_, state_;
};

class ResidualNode final : public Node {
public:
    ResidualNode(const json& c, Ctx& ctx, std::size_t width) {
        in_w = out_w = max_w = width;
        prenorm_ = c.value("prenorm", false);
        if (c.contains("norm") && !c["norm"].is_null()) norm_ = make_node(c["norm"], ctx, width);
        std::size_t w = width;
        for (const auto& lc : c.at("body")) {
            body_.push_back(make_node(lc, ctx, w));
            w = body_.back()->out_w;
            max_w = std::max(max_w, w);
        }
        a_ = DeviceArray<float>(ctx.chunk * max_w);
        b_ = DeviceArray<float>(ctx.chunk * max_w);
    }
    void run(const float* in, float* out, std::size_t frames) override {
        float* a = a_.get();
        float* b = b_.get();
        const float* cur = in;
        if (prenorm_ && norm_) {
            norm_->run(in, a, frames);
            cur = a;
        }
        for (auto& l : body_) {
            float* dst = (cur == a) ? b : a;
            l->run(cur, dst, frames);
            cur = dst;
        }
        const std::size_t n = frames * in_w;
        if (prenorm_ || !norm_) {
            add(in, cur, out, n);
        } else {
            float* sum = (cur == a) ? b : a;
            add(in, cur, sum, n);
            norm_->run(sum, out, frames);
        }
    }
    void reset() override {
        for (auto& l : body_) l->reset();
    }
    void collect_plans(std::vector<LayerPlan>& p) const override {
        for (const auto& l : body_) l->collect_plans(p);
    }

private:
    bool prenorm_ = false;
    std::unique_ptr<Node> norm_;
    std::vector<std::unique_ptr<Node>> body_;
    DeviceArray<float> a_, b_;
};

std::string unsupported(const json& c) {
    const auto type = c.value("type", std::string());
    static const char* ok[] = {"linear", "layernorm", "batchnorm", "gelu", "silu", "tanh", "relu", "sigmoid", "glu", "s4d",
                               "residual", "rmsnorm", "mamba", "mamba2"};
    if (std::none_of(std::begin(ok), std::end(ok), [&](const char* k) { return type == k; }))
        return "layer " + label(c) + " has no GPU path (the CUDA backend runs linear, layernorm, rmsnorm, batchnorm, "
               "activations, glu, s4d, mamba, mamba2 and residual layers)";
    const auto size = [&](const char* k, std::size_t dflt) { return c.contains(k) && c[k].is_number_unsigned() ? c[k].get<std::size_t>() : dflt; };
    if (type == "mamba" && size("d_state", 16) > 64)
        return "layer " + label(c) + ": the GPU selective scan supports d_state up to 64";
    if (type == "mamba2") {
        if (size("n_groups", 1) != 1) return "layer " + label(c) + ": the GPU SSD kernel supports n_groups = 1 only";
        if (size("head_dim", 64) > 128 || size("d_state", 128) > 128)
            return "layer " + label(c) + ": the GPU SSD kernel supports head_dim and d_state up to 128";
        if (c.value("d_per_channel", false)) return "layer " + label(c) + ": the GPU SSD kernel takes D per head (d_per_channel is not supported)";
    }
    if (type == "residual") {
        if (c.contains("norm") && c["norm"].is_object())
            if (auto r = unsupported(c["norm"]); !r.empty()) return r;
        if (c.contains("body"))
            for (const auto& l : c["body"])
                if (auto r = unsupported(l); !r.empty()) return r;
    }
    return {};
}

std::unique_ptr<Node> make_node(const json& c, Ctx& ctx, std::size_t width) {
    const auto type = c.at("type").get<std::string>();
    if (type == "linear") return std::make_unique<LinearNode>(c, ctx, width);
    if (type == "layernorm") return std::make_unique<LayerNormNode>(c, ctx, width);
    if (type == "batchnorm") return std::make_unique<AffineNode>(c, ctx, width);
    if (type == "glu") return std::make_unique<GluNode>(width);
    if (type == "s4d") return std::make_unique<S4DNode>(c, ctx, width);
    if (type == "residual") return std::make_unique<ResidualNode>(c, ctx, width);
    if (type == "rmsnorm") return std::make_unique<RmsNormNode>(c, ctx, width);
    if (type == "mamba") return std::make_unique<MambaNode>(c, ctx, width);
    if (type == "mamba2") return std::make_unique<Mamba2Node>(c, ctx, width);
    if (type == "gelu") {
        const bool tanh_approx = c.value("approximate", std::string("none")) == "tanh";
        return std::make_unique<ActNode>(tanh_approx ? Act::gelu_tanh : Act::gelu, width, tanh_approx ? "gelu (tanh)" : "gelu");
    }
    if (type == "silu") return std::make_unique<ActNode>(Act::silu, width, "silu");
    if (type == "tanh") return std::make_unique<ActNode>(Act::tanh, width, "tanh");
    if (type == "relu") return std::make_unique<ActNode>(Act::relu, width, "relu");
    if (type == "sigmoid") return std::make_unique<ActNode>(Act::sigmoid, width, "sigmoid");
    throw UsageError(unsupported(c));
}

json parse_config(const TensorFile& weights) {
    const auto it = weights.metadata().find("ssmstream");
    if (it == weights.metadata().end()) throw FormatError(weights.label() + ": no \"ssmstream\" config in __metadata__");
    try {
        return json::parse(it->second);
    } catch (const json::exception& e) {
        throw FormatError(weights.label() + ": the ssmstream config is not valid JSON: " + e.what());
    }
}

}  // namespace
}  // namespace detail

int device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    return n;
}

std::string device_name(int device) {
    cudaDeviceProp p{};
    const auto e = cudaGetDeviceProperties(&p, device);
    if (e != cudaSuccess) return cudaGetErrorString(e);
    return p.name;
}

void synchronize() { SSM_CUDA_CHECK(cudaDeviceSynchronize()); }

std::string unsupported_reason(const TensorFile& weights) {
    const auto cfg = detail::parse_config(weights);
    if (!cfg.contains("layers") || !cfg["layers"].is_array()) return "the config has no layers list";
    for (const auto& l : cfg["layers"])
        if (auto r = detail::unsupported(l); !r.empty()) return r;
    return {};
}

struct Batch::Impl {
    std::shared_ptr<const Model> model;
    BatchOptions options;
    cublasHandle_t blas = nullptr;
    std::vector<std::unique_ptr<detail::Node>> nodes;
    std::vector<LayerPlan> plans;
    detail::DeviceArray<float> a, b;
    detail::DeviceArray<unsigned long long> bad;
    std::uint64_t nonfinite = 0;
    ~Impl() {
        nodes.clear();
        if (blas) cublasDestroy(blas);
    }
};

Batch::Batch(std::shared_ptr<const Model> model, const TensorFile& weights, BatchOptions options) : impl_(std::make_unique<Impl>()) {
    if (!model) throw UsageError("cuda::Batch needs a model");
    if (options.chunk_frames == 0 || options.chunk_frames > (1u << 26)) throw UsageError("cuda::Batch: chunk_frames must be in [1, 2^26]");
    const auto it = weights.metadata().find("ssmstream");
    if (it == weights.metadata().end() || it->second != model->config_json())
        throw UsageError("cuda::Batch: " + weights.label() + " is not the file the model was loaded from (configs differ)");
    if (auto why = unsupported_reason(weights); !why.empty()) throw UsageError("the CUDA backend cannot run this model: " + why);
    if (device_count() <= options.device) throw UsageError("the CUDA backend needs a GPU: no CUDA device found");
    auto& I = *impl_;
    I.model = std::move(model);
    I.options = options;
    SSM_CUDA_CHECK(cudaSetDevice(options.device));
    SSM_CUBLAS_CHECK(cublasCreate(&I.blas));
    // Float32 GEMMs, as on the CPU: tensor-core TF32 would cost the 1e-4 parity for little gain at these widths.
    SSM_CUBLAS_CHECK(cublasSetMathMode(I.blas, CUBLAS_PEDANTIC_MATH));
    const detail::Weights w{weights};
    detail::Ctx ctx{I.blas, options.chunk_frames, I.options, w};
    const auto cfg = detail::parse_config(weights);
    std::size_t width = I.model->info().in_channels, maxw = width;
    for (const auto& lc : cfg.at("layers")) {
        I.nodes.push_back(detail::make_node(lc, ctx, width));
        width = I.nodes.back()->out_w;
        maxw = std::max({maxw, I.nodes.back()->in_w, width});
    }
    for (const auto& n : I.nodes) n->collect_plans(I.plans);
    I.a = detail::DeviceArray<float>(options.chunk_frames * maxw);
    I.b = detail::DeviceArray<float>(options.chunk_frames * maxw);
    I.bad = detail::DeviceArray<unsigned long long>(1);
    I.bad.zero();
    SSM_CUDA_CHECK(cudaDeviceSynchronize());
}

Batch::~Batch() = default;
Batch::Batch(Batch&&) noexcept = default;
Batch& Batch::operator=(Batch&&) noexcept = default;

void Batch::process_device(const float* d_in, float* d_out, std::size_t frames) {
    auto& I = *impl_;
    if (frames > I.options.chunk_frames) throw UsageError("cuda::Batch::process_device: frames exceed chunk_frames");
    const std::size_t cin = I.model->info().in_channels;
    if (frames == 0) return;
    float* a = I.a.get();
    float* b = I.b.get();
    SSM_CUDA_CHECK(cudaMemcpyAsync(a, d_in, frames * cin * sizeof(float), cudaMemcpyDeviceToDevice));
    detail::sanitize(a, frames * cin, I.bad.get());
    const float* cur = a;
    for (std::size_t i = 0; i < I.nodes.size(); ++i) {
        float* dst = i + 1 == I.nodes.size() ? d_out : (cur == a ? b : a);
        I.nodes[i]->run(cur, dst, frames);
        cur = dst;
    }
}

void Batch::process(const float* in, float* out, std::size_t frames) {
    auto& I = *impl_;
    const std::size_t cin = I.model->info().in_channels, cout = I.model->info().out_channels;
    while (frames > 0) {
        const std::size_t n = std::min(frames, I.options.chunk_frames);
        float* a = I.a.get();
        float* b = I.b.get();
        SSM_CUDA_CHECK(cudaMemcpy(a, in, n * cin * sizeof(float), cudaMemcpyHostToDevice));
        detail::sanitize(a, n * cin, I.bad.get());
        float* cur = a;
        for (auto& node : I.nodes) {
            float* dst = (cur == a) ? b : a;
            node->run(cur, dst, n);
            cur = dst;
        }
        SSM_CUDA_CHECK(cudaMemcpy(out, cur, n * cout * sizeof(float), cudaMemcpyDeviceToHost));
        in += n * cin;
        out += n * cout;
        frames -= n;
    }
    unsigned long long bad = 0;
    SSM_CUDA_CHECK(cudaMemcpy(&bad, I.bad.get(), sizeof bad, cudaMemcpyDeviceToHost));
    I.nonfinite = bad;
}

std::vector<float> Batch::run(std::span<const float> in) {
    const auto& info = impl_->model->info();
    if (in.size() % info.in_channels != 0) throw UsageError("cuda::Batch::run: not a whole number of frames");
    std::vector<float> out(in.size() / info.in_channels * info.out_channels);
    process(in.data(), out.data(), in.size() / info.in_channels);
    return out;
}

void Batch::reset() {
    for (auto& n : impl_->nodes) n->reset();
}

const std::vector<LayerPlan>& Batch::plan() const noexcept { return impl_->plans; }
const Model& Batch::model() const noexcept { return *impl_->model; }
std::uint64_t Batch::nonfinite_count() const noexcept { return impl_->nonfinite; }
std::size_t Batch::chunk_frames() const noexcept { return impl_->options.chunk_frames; }

}  // namespace ssm::cuda
