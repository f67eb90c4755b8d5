// The pieces of Mamba's MixerModel besides the mixers: the token embedding (a language model's first layer) and
// RMSNorm. A MixerModel block is a `residual` (no norm of its own) whose body is [norm, mixer] — x + mixer(norm(x)),
// which is mamba_ssm's Block with fused_add_norm and transformers' MambaBlock — and the stack ends in the final norm.
#include <cmath>

#include "layers/mamba_common.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

// PyTorch RMSNorm as MambaRMSNorm / mamba_ssm RMSNorm: y = w · x / sqrt(mean(x²) + eps).
class RmsNorm final : public Layer {
public:
    std::string name;
    std::size_t dim = 0;
    float eps = 1e-5f;
    std::vector<float> weight;
    std::size_t in_width() const noexcept override { return dim; }
    std::size_t out_width() const noexcept override { return dim; }
    std::size_t param_count() const noexcept override { return dim; }
    std::string describe() const override { return "rmsnorm '" + name + "' " + std::to_string(dim); }
    void step(const float* in, float* out, std::size_t frames, float*, float*) const noexcept override {
        for (std::size_t t = 0; t < frames; ++t) {
            std::copy(in + t * dim, in + (t + 1) * dim, out + t * dim);
            rms_normalize(out + t * dim, dim, eps, weight.data());
        }
    }
};

// nn.Embedding: the frame's one value is a token id (an integer carried in a float, exact below 2^24); ids outside
// [0, vocab) give a zero row (the command line rejects them before they get here).
class Embedding final : public Layer {
public:
    std::string name;
    std::size_t vocab = 0, dim = 0;
    Weights table;  // [vocab][dim], BF16 kept as BF16
    std::size_t in_width() const noexcept override { return 1; }
    std::size_t out_width() const noexcept override { return dim; }
    std::size_t param_count() const noexcept override { return table.size(); }
    std::size_t weight_bytes() const noexcept override { return table.bytes(); }
    std::string describe() const override {
        return "embedding '" + name + "' " + std::to_string(vocab) + " tokens -> " + std::to_string(dim);
    }
    void step(const float* in, float* out, std::size_t frames, float*, float*) const noexcept override {
        for (std::size_t t = 0; t < frames; ++t) {
            const float v = in[t];
            float* y = out + t * dim;
            if (v >= 0.0f && v < static_cast<float>(vocab)) {
                const auto id = static_cast<std::size_t>(std::lround(v));
                if (id < vocab) {
                    table.row(id, y);
                    continue;
                }
            }
            std::fill(y, y + dim, 0.0f);
        }
    }
};

}  // namespace

std::unique_ptr<Layer> make_rmsnorm(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"dim", "eps"});
    auto l = std::make_unique<RmsNorm>();
    l->name = get_string(c, "name", "", true);
    l->dim = get_size(c, "dim");
    l->eps = static_cast<float>(get_number(c, "eps", 1e-5));
    if (!(l->eps >= 0.0f)) throw ConfigError("layer " + layer_label(c) + ": eps must be >= 0");
    l->weight = p.take_floats(l->name + ".weight", {static_cast<std::int64_t>(l->dim)});
    (void)in_width;
    return l;
}

std::unique_ptr<Layer> make_embedding(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"in", "vocab", "dim"});
    auto l = std::make_unique<Embedding>();
    l->name = get_string(c, "name", "", true);
    if (get_size(c, "in", 1, false) != 1) throw ConfigError("layer " + layer_label(c) + ": an embedding takes 1 input channel (the token id)");
    l->vocab = get_size(c, "vocab");
    l->dim = get_size(c, "dim");
    if (l->vocab > (1u << 24)) throw ConfigError("layer " + layer_label(c) + ": vocab above 2^24 cannot be carried in float32 frames");
    l->table = p.take_weights(l->name + ".weight", static_cast<std::int64_t>(l->vocab), static_cast<std::int64_t>(l->dim));
    (void)in_width;
    return l;
}

}  // namespace ssm::detail
