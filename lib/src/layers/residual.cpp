// A residual block as in the S4 example model (and later Mamba's MixerModel):
//   prenorm:  x + body(norm(x))      postnorm:  norm(x + body(x))
// The body is a list of layers with the block's width at both ends. Dropout is the identity at inference.
#include <algorithm>

#include "layers/layer.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

class Residual final : public Layer {
public:
    std::string name;
    std::size_t width = 0;
    bool prenorm = false;
    std::unique_ptr<Layer> norm;  // may be null
    std::vector<std::unique_ptr<Layer>> body;
    std::size_t maxw = 0;

    std::size_t in_width() const noexcept override { return width; }
    std::size_t out_width() const noexcept override { return width; }
    std::size_t max_width() const noexcept override { return maxw; }
    std::size_t state_size() const noexcept override {
        std::size_t s = 0;
        for (const auto& l : body) s += l->state_size();
        return s;
    }
    std::size_t scratch_size(std::size_t max_block) const noexcept override {
        std::size_t inner = norm ? norm->scratch_size(max_block) : 0;
        for (const auto& l : body) inner = std::max(inner, l->scratch_size(max_block));
        return 2 * max_block * maxw + inner;
    }
    std::size_t param_count() const noexcept override {
        std::size_t p = norm ? norm->param_count() : 0;
        for (const auto& l : body) p += l->param_count();
        return p;
    }
    std::size_t weight_bytes() const noexcept override {
        std::size_t p = norm ? norm->weight_bytes() : 0;
        for (const auto& l : body) p += l->weight_bytes();
        return p;
    }
    std::string describe() const override {
        return "residual " + std::to_string(width) + (prenorm ? " (prenorm)" : " (postnorm)");
    }
    void describe_into(std::vector<std::string>& lines, const std::string& indent) const override {
        lines.push_back(indent + describe());
        if (norm) norm->describe_into(lines, indent + "  norm: ");
        for (const auto& l : body) l->describe_into(lines, indent + "  ");
    }

    void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept override {
        const std::size_t stride = frames * maxw;
        float* a = scratch;
        float* b = scratch + stride;
        float* inner = scratch + 2 * stride;
        const float* cur = in;
        if (prenorm && norm) {
            norm->step(in, a, frames, nullptr, inner);
            cur = a;
        }
        float* st = state;
        for (std::size_t i = 0; i < body.size(); ++i) {
            float* dst = (cur == a) ? b : a;
            body[i]->step(cur, dst, frames, st, inner);
            st += body[i]->state_size();
            cur = dst;
        }
        const std::size_t n = frames * width;
        if (prenorm || !norm) {
#pragma omp simd
            for (std::size_t i = 0; i < n; ++i) out[i] = in[i] + cur[i];
        } else {
            float* sum = (cur == a) ? b : a;
#pragma omp simd
            for (std::size_t i = 0; i < n; ++i) sum[i] = in[i] + cur[i];
            norm->step(sum, out, frames, nullptr, inner);
        }
    }

    std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const override;
};

class ResidualRunner final : public LayerRunner {
public:
    ResidualRunner(const Residual& r, BatchContext& ctx) : r_(r), pool_(ctx.pool) {
        a_slice_ = ctx.reserve(ctx.options.chunk_frames * r.maxw);
        b_slice_ = ctx.reserve(ctx.options.chunk_frames * r.maxw);
        const std::size_t above = ctx.offset;  // children reuse the space above our two buffers, one after another
        if (r.norm) {
            BatchContext c{ctx.pool, ctx.options, ctx.ws, above};
            norm_ = r.norm->make_runner(c);
        }
        for (const auto& l : r.body) {
            BatchContext c{ctx.pool, ctx.options, ctx.ws, above};
            body_.push_back(l->make_runner(c));
        }
    }
    void run(const float* in, float* out, std::size_t frames) override {
        float* a = a_slice_.get();
        float* b = b_slice_.get();
        const float* cur = in;
        if (r_.prenorm && norm_) {
            norm_->run(in, a, frames);
            cur = a;
        }
        for (auto& l : body_) {
            float* dst = (cur == a) ? b : a;
            l->run(cur, dst, frames);
            cur = dst;
        }
        const std::size_t n = frames * r_.width;
        float* target = (r_.prenorm || !norm_) ? out : ((cur == a) ? b : a);
        pool_.parallel_for(n, [&](std::size_t b, std::size_t e, std::size_t) {
            for (std::size_t i = b; i < e; ++i) target[i] = in[i] + cur[i];
        }, 1 << 16);
        if (target != out) norm_->run(target, out, frames);
    }
    void reset() override {
        for (auto& l : body_) l->reset();
    }
    void save(float* dst) const override {
        for (std::size_t i = 0; i < body_.size(); ++i) {
            body_[i]->save(dst);
            dst += r_.body[i]->state_size();
        }
    }
    void load(const float* src) override {
        for (std::size_t i = 0; i < body_.size(); ++i) {
            body_[i]->load(src);
            src += r_.body[i]->state_size();
        }
    }
    void collect_plans(std::vector<LayerPlan>& plans) const override {
        for (const auto& l : body_) l->collect_plans(plans);
    }

private:
    const Residual& r_;
    ThreadPool& pool_;
    std::unique_ptr<LayerRunner> norm_;
    std::vector<std::unique_ptr<LayerRunner>> body_;
    Workspace::Slice a_slice_, b_slice_;
};

std::unique_ptr<LayerRunner> Residual::make_runner(BatchContext& ctx) const { return std::make_unique<ResidualRunner>(*this, ctx); }

}  // namespace

std::unique_ptr<Layer> make_residual(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"prenorm", "norm", "body"});
    auto r = std::make_unique<Residual>();
    r->name = c.contains("name") && c["name"].is_string() ? c["name"].get<std::string>() : "";
    r->width = in_width;
    r->prenorm = get_bool(c, "prenorm", false);
    if (c.contains("norm") && !c["norm"].is_null()) {
        const auto t = c["norm"].is_object() && c["norm"].contains("type") ? c["norm"]["type"] : nlohmann::json();
        if (t != "layernorm" && t != "batchnorm")
            throw ConfigError("layer " + layer_label(c) + ": norm must be a layernorm or batchnorm layer");
        r->norm = make_layer(c["norm"], p, in_width);
    }
    if (!c.contains("body") || !c["body"].is_array() || c["body"].empty())
        throw ConfigError("layer " + layer_label(c) + ": body must be a non-empty list of layers");
    std::size_t w = in_width;
    r->maxw = in_width;
    for (const auto& lc : c["body"]) {
        r->body.push_back(make_layer(lc, p, w));
        w = r->body.back()->out_width();
        r->maxw = std::max(r->maxw, w);  // ping-pong buffers hold what passes between body layers
    }
    if (w != in_width)
        throw ConfigError("layer " + layer_label(c) + ": body maps " + std::to_string(in_width) + " channels to " +
                          std::to_string(w) + "; a residual body must keep the width");
    return r;
}

}  // namespace ssm::detail
