// Per-frame layers: linear (and Conv1d k=1), LayerNorm, inference BatchNorm (folded to an affine), activations, GLU.
#include <algorithm>
#include <cmath>

#include "layers/layer.hpp"
#include "ops/dense.hpp"
#include "ops/math.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

std::vector<float> to_f32(const std::vector<double>& v) { return {v.begin(), v.end()}; }

class Linear final : public Layer {
public:
    /** A BF16 matrix stays BF16 in PyTorch's [out][in] layout: each output is a dot product over a row (an LM head
     * read once per token at memory speed); float32 is transposed to [in][out] for dense_forward. */
    Linear(std::string name, std::size_t in, std::size_t out, Weights w, std::vector<double> b)
        : name_(std::move(name)), in_(in), out_(out), bias_(to_f32(b)) {
        if (w.is_bf16()) {
            bf16_ = std::move(w.bf16);
            return;
        }
        wt_.resize(in * out);
        const std::vector<float>& src = w.f32;
        // [out][in] (PyTorch) -> [in][out], in 64x64 tiles (an LM head is 50k x 768: a plain strided loop thrashes).
        constexpr std::size_t T = 64;
        for (std::size_t o0 = 0; o0 < out; o0 += T)
            for (std::size_t i0 = 0; i0 < in; i0 += T)
                for (std::size_t o = o0; o < std::min(out, o0 + T); ++o)
                    for (std::size_t i = i0; i < std::min(in, i0 + T); ++i) wt_[i * out + o] = src[o * in + i];
    }
    std::size_t in_width() const noexcept override { return in_; }
    std::size_t out_width() const noexcept override { return out_; }
    std::size_t param_count() const noexcept override { return in_ * out_ + bias_.size(); }
    std::size_t weight_bytes() const noexcept override {
        return (wt_.size() + bias_.size()) * sizeof(float) + bf16_.size() * sizeof(std::uint16_t);
    }
    std::string describe() const override {
        return "linear '" + name_ + "' " + std::to_string(in_) + " -> " + std::to_string(out_) + (bias_.empty() ? " (no bias)" : "");
    }
    void step(const float* in, float* out, std::size_t frames, float*, float*) const noexcept override {
        const float* b = bias_.empty() ? nullptr : bias_.data();
        if (!bf16_.empty())
            project_bf16(in, in_, frames, in_, bf16_.data(), b, out_, out, out_);
        else
            dense_forward(in, out, frames, in_, out_, wt_.data(), b);
    }

private:
    std::string name_;
    std::size_t in_, out_;
    std::vector<float> wt_, bias_;
    std::vector<std::uint16_t> bf16_;
};

class LayerNorm final : public Layer {
public:
    LayerNorm(std::string name, std::size_t dim, float eps, std::vector<double> g, std::vector<double> b)
        : name_(std::move(name)), dim_(dim), eps_(eps), gamma_(to_f32(g)), beta_(to_f32(b)) {}
    std::size_t in_width() const noexcept override { return dim_; }
    std::size_t out_width() const noexcept override { return dim_; }
    std::size_t param_count() const noexcept override { return 2 * dim_; }
    std::string describe() const override { return "layernorm '" + name_ + "' " + std::to_string(dim_); }
    void step(const float* in, float* out, std::size_t frames, float*, float*) const noexcept override {
        layernorm_forward(in, out, frames, dim_, gamma_.data(), beta_.data(), eps_);
    }

private:
    std::string name_;
    std::size_t dim_;
    float eps_;
    std::vector<float> gamma_, beta_;
};

// Inference-mode BatchNorm is y = (x − mean)/sqrt(var + eps)·γ + β: folded here into y = a·x + c.
class Affine final : public Layer {
public:
    Affine(std::string label, std::vector<float> a, std::vector<float> c)
        : label_(std::move(label)), a_(std::move(a)), c_(std::move(c)) {}
    std::size_t in_width() const noexcept override { return a_.size(); }
    std::size_t out_width() const noexcept override { return a_.size(); }
    std::size_t param_count() const noexcept override { return 4 * a_.size(); }
    std::string describe() const override { return label_; }
    void step(const float* in, float* out, std::size_t frames, float*, float*) const noexcept override {
        const std::size_t w = a_.size();
        for (std::size_t t = 0; t < frames; ++t)
#pragma omp simd
            for (std::size_t i = 0; i < w; ++i) out[t * w + i] = in[t * w + i] * a_[i] + c_[i];
    }

private:
    std::string label_;
    std::vector<float> a_, c_;
};

enum class Act { gelu, gelu_tanh, silu, tanh, relu, sigmoid };

class Activation final : public Layer {
public:
    Activation(Act act, std::size_t w, std::string label) : act_(act), w_(w), label_(std::move(label)) {}
    std::size_t in_width() const noexcept override { return w_; }
    std::size_t out_width() const noexcept override { return w_; }
    std::size_t param_count() const noexcept override { return 0; }
    std::string describe() const override { return label_; }
    void step(const float* in, float* out, std::size_t frames, float*, float*) const noexcept override {
        const std::size_t n = frames * w_;
        switch (act_) {
            case Act::gelu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) out[i] = gelu_erf(in[i]);
                break;
            case Act::gelu_tanh:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) out[i] = gelu_tanh(in[i]);
                break;
            case Act::silu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) out[i] = silu(in[i]);
                break;
            case Act::tanh:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) out[i] = fast_tanh(in[i]);
                break;
            case Act::relu:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) out[i] = in[i] > 0 ? in[i] : 0.0f;
                break;
            case Act::sigmoid:
#pragma omp simd
                for (std::size_t i = 0; i < n; ++i) out[i] = fast_sigmoid(in[i]);
                break;
        }
    }

private:
    Act act_;
    std::size_t w_;
    std::string label_;
};

class Glu final : public Layer {
public:
    explicit Glu(std::size_t in) : in_(in) {}
    std::size_t in_width() const noexcept override { return in_; }
    std::size_t out_width() const noexcept override { return in_ / 2; }
    std::size_t param_count() const noexcept override { return 0; }
    std::string describe() const override { return "glu " + std::to_string(in_) + " -> " + std::to_string(in_ / 2); }
    void step(const float* in, float* out, std::size_t frames, float*, float*) const noexcept override {
        const std::size_t h = in_ / 2;
        for (std::size_t t = 0; t < frames; ++t) {
            const float* x = in + t * in_;
            float* y = out + t * h;
#pragma omp simd
            for (std::size_t i = 0; i < h; ++i) y[i] = x[i] * fast_sigmoid(x[h + i]);
        }
    }

private:
    std::size_t in_;
};

}  // namespace

std::unique_ptr<Layer> make_linear(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"in", "out", "bias"});
    const auto name = get_string(c, "name", "", true);
    const auto in = get_size(c, "in", in_width, false);
    const auto out = get_size(c, "out");
    auto w = p.take_weights(name + ".weight", static_cast<std::int64_t>(out), static_cast<std::int64_t>(in), true);
    std::vector<double> b;
    if (get_bool(c, "bias", true)) b = p.take(name + ".bias", {static_cast<std::int64_t>(out)});
    return std::make_unique<Linear>(name, in, out, std::move(w), std::move(b));
}

std::unique_ptr<Layer> make_layernorm(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"dim", "eps"});
    const auto name = get_string(c, "name", "", true);
    const auto dim = get_size(c, "dim", in_width, false);
    const double eps = get_number(c, "eps", 1e-5);
    if (!(eps > 0)) throw ConfigError("layer " + layer_label(c) + ": eps must be > 0");
    const auto d = static_cast<std::int64_t>(dim);
    auto g = p.take(name + ".weight", {d});
    auto b = p.take(name + ".bias", {d});
    return std::make_unique<LayerNorm>(name, dim, static_cast<float>(eps), std::move(g), std::move(b));
}

std::unique_ptr<Layer> make_batchnorm(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"dim", "eps"});
    const auto name = get_string(c, "name", "", true);
    const auto dim = get_size(c, "dim", in_width, false);
    const double eps = get_number(c, "eps", 1e-5);
    const auto d = static_cast<std::int64_t>(dim);
    auto g = p.take(name + ".weight", {d});
    auto b = p.take(name + ".bias", {d});
    auto mean = p.take(name + ".running_mean", {d});
    auto var = p.take(name + ".running_var", {d});
    if (p.has(name + ".num_batches_tracked")) {  // a training counter: no maths, accepted as a scalar or [1]
        const auto& v = p.view(name + ".num_batches_tracked");
        p.take(name + ".num_batches_tracked", v.shape);
    }
    std::vector<float> a(dim), off(dim);
    for (std::size_t i = 0; i < dim; ++i) {
        if (var[i] + eps <= 0) throw FormatError(p.label() + ": tensor '" + name + ".running_var': negative variance");
        const double s = g[i] / std::sqrt(var[i] + eps);
        a[i] = static_cast<float>(s);
        off[i] = static_cast<float>(b[i] - mean[i] * s);
    }
    return std::make_unique<Affine>("batchnorm '" + name + "' " + std::to_string(dim) + " (folded)", std::move(a), std::move(off));
}

std::unique_ptr<Layer> make_activation(const nlohmann::json& c, Params&, std::size_t in_width) {
    const auto type = c["type"].get<std::string>();
    if (type == "gelu") {
        check_fields(c, {"approximate"});
        const auto approx = get_string(c, "approximate", "none");
        if (approx != "none" && approx != "tanh") throw ConfigError("layer " + layer_label(c) + ": approximate must be none or tanh");
        return std::make_unique<Activation>(approx == "none" ? Act::gelu : Act::gelu_tanh, in_width,
                                            approx == "none" ? "gelu" : "gelu (tanh)");
    }
    check_fields(c, {});
    const Act a = type == "silu" ? Act::silu : type == "tanh" ? Act::tanh : type == "relu" ? Act::relu : Act::sigmoid;
    return std::make_unique<Activation>(a, in_width, type);
}

std::unique_ptr<Layer> make_glu(const nlohmann::json& c, Params&, std::size_t in_width) {
    check_fields(c, {});
    if (in_width % 2 != 0) throw ConfigError("layer " + layer_label(c) + ": glu needs an even input width, got " + std::to_string(in_width));
    return std::make_unique<Glu>(in_width);
}

}  // namespace ssm::detail
