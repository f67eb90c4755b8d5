// The one place that maps a config "type" to a layer family, plus the config and tensor helpers they share.
#include <algorithm>
#include <cstring>
#include <map>

#include "layers/layer.hpp"
#include "layers/mamba_common.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

using Factory = std::unique_ptr<Layer> (*)(const nlohmann::json&, Params&, std::size_t);

static const std::map<std::string, Factory>& registry() {
    static const std::map<std::string, Factory> r = {
        {"linear", make_linear},       {"layernorm", make_layernorm}, {"batchnorm", make_batchnorm},
        {"gelu", make_activation},     {"silu", make_activation},     {"tanh", make_activation},
        {"relu", make_activation},     {"sigmoid", make_activation},  {"glu", make_glu},
        {"s4d", make_s4d},             {"residual", make_residual},
        {"mamba", make_mamba},         {"mamba2", make_mamba2},       {"rmsnorm", make_rmsnorm},
        {"embedding", make_embedding}, {"sos", make_sos},
        {"lru", make_lru},
        {"s5", make_s5},  
        {"dss", make_dss},
        {"ema", make_ema},
        {"s4", make_s4},
        {"hippo", make_hippo},
        {"h3", make_h3},
        {"gss", make_gss},
    };
    return r;
}

std::unique_ptr<Layer> make_layer(const nlohmann::json& config, Params& params, std::size_t in_width) {
    if (!config.is_object()) throw ConfigError("a layer config is not a JSON object");
    if (!config.contains("type") || !config["type"].is_string())
        throw ConfigError("layer " + layer_label(config) + ": missing \"type\"");
    const auto type = config["type"].get<std::string>();
    const auto it = registry().find(type);
    if (it == registry().end()) {
        std::string known;
        for (const auto& [k, v] : registry()) known += (known.empty() ? "" : ", ") + k;
        throw ConfigError("layer " + layer_label(config) + ": unknown type '" + type + "' (known: " + known + ")");
    }
    auto layer = it->second(config, params, in_width);
    if (layer->in_width() != in_width)
        throw ConfigError("layer " + layer_label(config) + ": expects " + std::to_string(layer->in_width()) +
                          " input channels but receives " + std::to_string(in_width));
    return layer;
}

std::string layer_label(const nlohmann::json& c) {
    std::string s;
    if (c.is_object() && c.contains("name") && c["name"].is_string()) s = "'" + c["name"].get<std::string>() + "'";
    if (c.is_object() && c.contains("type") && c["type"].is_string())
        s += (s.empty() ? "" : " ") + std::string("(") + c["type"].get<std::string>() + ")";
    return s.empty() ? "<unnamed>" : s;
}

void check_fields(const nlohmann::json& c, std::initializer_list<const char*> known) {
    for (auto it = c.begin(); it != c.end(); ++it) {
        const bool ok = it.key() == "type" || it.key() == "name" ||
                        std::any_of(known.begin(), known.end(), [&](const char* k) { return it.key() == k; });
        if (!ok) throw ConfigError("layer " + layer_label(c) + ": unknown field '" + it.key() + "'");
    }
}

std::size_t get_size(const nlohmann::json& c, const char* key, std::size_t fallback, bool required) {
    if (!c.contains(key)) {
        if (required) throw ConfigError("layer " + layer_label(c) + ": missing field '" + key + "'");
        return fallback;
    }
    const auto& v = c[key];
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0 || v.get<std::uint64_t>() > (1u << 20))
        throw ConfigError("layer " + layer_label(c) + ": field '" + key + "' must be an integer in [1, 2^20]");
    return v.get<std::size_t>();
}

std::string get_string(const nlohmann::json& c, const char* key, const std::string& fallback, bool required) {
    if (!c.contains(key)) {
        if (required) throw ConfigError("layer " + layer_label(c) + ": missing field '" + key + "'");
        return fallback;
    }
    if (!c[key].is_string()) throw ConfigError("layer " + layer_label(c) + ": field '" + key + "' must be a string");
    return c[key].get<std::string>();
}

double get_number(const nlohmann::json& c, const char* key, double fallback) {
    if (!c.contains(key)) return fallback;
    if (!c[key].is_number()) throw ConfigError("layer " + layer_label(c) + ": field '" + key + "' must be a number");
    return c[key].get<double>();
}

bool get_bool(const nlohmann::json& c, const char* key, bool fallback) {
    if (!c.contains(key)) return fallback;
    if (!c[key].is_boolean()) throw ConfigError("layer " + layer_label(c) + ": field '" + key + "' must be true or false");
    return c[key].get<bool>();
}

Params::Params(const TensorFile& file, std::string prefix)
    : file_(file), used_store_(std::make_shared<std::vector<std::string>>()) {
    used_ = used_store_.get();
    (void)prefix;
}

bool Params::has(const std::string& name) const { return file_.find(name) != nullptr; }

const TensorView& Params::view(const std::string& name) const {
    const auto* t = file_.find(name);
    if (t == nullptr) throw FormatError(file_.label() + ": missing tensor '" + name + "'");
    return *t;
}

static std::string shape_string(const std::vector<std::int64_t>& s) {
    std::string r = "[";
    for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + (s[i] < 0 ? std::string("*") : std::to_string(s[i]));
    return r + "]";
}

const TensorView& Params::checked(const std::string& name, const std::vector<std::int64_t>& shape, bool allow_trailing_one) const {
    const auto& t = view(name);
    auto got = t.shape;
    if (allow_trailing_one && got.size() == shape.size() + 1 && got.back() == 1) got.pop_back();
    bool ok = got.size() == shape.size();
    for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == got[i];
    if (!ok)
        throw FormatError(file_.label() + ": tensor '" + name + "': shape " + shape_string(t.shape) + ", expected " +
                          shape_string(shape));
    return t;
}

std::vector<double> Params::take(const std::string& name, const std::vector<std::int64_t>& shape, bool allow_trailing_one) {
    auto values = TensorFile::to_double(checked(name, shape, allow_trailing_one));
    for (double v : values)
        if (!std::isfinite(v)) throw FormatError(file_.label() + ": tensor '" + name + "': holds NaN or Inf");
    used_->push_back(name);
    return values;
}

std::vector<float> Params::take_floats(const std::string& name, const std::vector<std::int64_t>& shape, bool allow_trailing_one) {
    auto values = TensorFile::to_float(checked(name, shape, allow_trailing_one));
    // float64 values beyond float32's range become Inf here and are refused like any other non-finite weight.
    bool finite = true;
    for (float v : values) finite &= std::isfinite(v);
    if (!finite) throw FormatError(file_.label() + ": tensor '" + name + "': holds NaN or Inf");
    used_->push_back(name);
    return values;
}

Weights Params::take_weights(const std::string& name, std::int64_t rows, std::int64_t cols, bool allow_trailing_one) {
    Weights w;
    w.rows = static_cast<std::size_t>(rows);
    w.cols = static_cast<std::size_t>(cols);
    const auto& t = checked(name, {rows, cols}, allow_trailing_one);
    if (t.dtype != DType::BF16) {
        w.f32 = take_floats(name, {rows, cols}, allow_trailing_one);
        return w;
    }
    w.bf16.resize(t.numel());
    std::memcpy(w.bf16.data(), t.bytes.data(), w.bf16.size() * sizeof(std::uint16_t));  // little-endian, as the file
    for (std::uint16_t h : w.bf16)
        if ((h & 0x7f80u) == 0x7f80u) throw FormatError(file_.label() + ": tensor '" + name + "': holds NaN or Inf");
    used_->push_back(name);
    return w;
}

std::vector<std::string> Params::unused() const {
    std::vector<std::string> out;
    for (const auto& t : file_.tensors())
        if (std::find(used_->begin(), used_->end(), t.name) == used_->end()) out.push_back(t.name);
    return out;
}

// The default whole-chunk executor: the recurrent view over the chunk. Stateless layers split frames over threads.
namespace {
class StepRunner final : public LayerRunner {
public:
    StepRunner(const Layer& layer, BatchContext& ctx) : layer_(layer), pool_(ctx.pool) {
        state_.assign(layer.state_size(), 0.0f);
        const std::size_t threads = layer.state_size() == 0 ? pool_.size() : 1;
        piece_ = layer.state_size() == 0 ? std::min<std::size_t>(kPiece, ctx.options.chunk_frames) : ctx.options.chunk_frames;
        scratch_per_ = layer.scratch_size(piece_);
        scratch_ = ctx.reserve(scratch_per_ * threads);
    }
    void run(const float* in, float* out, std::size_t frames) override {
        if (layer_.state_size() != 0) {
            layer_.step(in, out, frames, state_.data(), scratch_.get());
            return;
        }
        // Pieces of frames (a few per thread) handed out to the threads as they come free; scratch is per thread.
        const std::size_t piece = std::clamp<std::size_t>(frames / (4 * pool_.size()), 64, piece_);
        const std::size_t pieces = (frames + piece - 1) / piece;
        pool_.parallel_for(pieces, [&](std::size_t b, std::size_t e, std::size_t part) {
            for (std::size_t p = b; p < e; ++p) {
                const std::size_t f0 = p * piece, f1 = std::min(frames, f0 + piece);
                layer_.step(in + f0 * layer_.in_width(), out + f0 * layer_.out_width(), f1 - f0, nullptr,
                            scratch_.get() + part * scratch_per_);
            }
        }, 1);
    }
    void reset() override { std::fill(state_.begin(), state_.end(), 0.0f); }
    void save(float* dst) const override { std::copy(state_.begin(), state_.end(), dst); }
    void load(const float* src) override { std::copy(src, src + state_.size(), state_.begin()); }
    void collect_plans(std::vector<LayerPlan>& plans) const override {
        plans.push_back({layer_.describe(), layer_.state_size() ? "recurrence" : "pointwise",
                         layer_.state_size() ? "stateful layer without a convolution view" : "per-frame, split over threads", 0, 0});
    }

private:
    const Layer& layer_;
    ThreadPool& pool_;
    std::vector<float> state_;
    Workspace::Slice scratch_;
    static constexpr std::size_t kPiece = 2048;
    std::size_t piece_ = 0;
    std::size_t scratch_per_ = 0;
};
}  // namespace

std::unique_ptr<LayerRunner> Layer::make_runner(BatchContext& ctx) const { return std::make_unique<StepRunner>(*this, ctx); }

}  // namespace ssm::detail
