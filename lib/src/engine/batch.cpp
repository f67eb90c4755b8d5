#include <algorithm>
#include <cmath>
#include <cstring>

#include "layers/layer.hpp"
#include "ops/thread_pool.hpp"
#include "ssmstream/batch.hpp"
#include "ssmstream/error.hpp"
#include "ssmstream/stream.hpp"

namespace ssm {

Backend backend_from_string(std::string_view name) {
    if (name == "auto") return Backend::automatic;
    if (name == "stream" || name == "recurrence") return Backend::recurrence;
    if (name == "fft") return Backend::fft;
    throw UsageError("unknown backend '" + std::string(name) + "' (auto, stream, fft)");
}

// Frames per chunk when no layer runs as FFT (activations of a chunk stay in L2).
constexpr std::size_t kRecurrenceChunk = 2048;

struct Batch::Impl {
    std::shared_ptr<const Model> model;
    BatchOptions options;
    detail::ThreadPool pool;
    detail::Workspace ws;
    std::vector<std::unique_ptr<detail::LayerRunner>> runners;
    std::vector<float> a, b;
    std::vector<LayerPlan> plans;
    std::uint64_t nonfinite = 0, frames = 0;

    Impl(std::shared_ptr<const Model> m, BatchOptions o) : model(std::move(m)), options(o), pool(o.threads) {}
};

Batch::Batch(std::shared_ptr<const Model> model, BatchOptions options) {
    if (!model) throw UsageError("Batch needs a model");
    if (options.chunk_frames == 0 || options.chunk_frames > (1u << 24)) throw UsageError("chunk_frames must be in [1, 2^24]");
    impl_ = std::make_unique<Impl>(std::move(model), options);
    auto build = [this] {
        auto& I = *impl_;
        I.runners.clear();
        I.plans.clear();
        I.ws = {};
        for (const auto& l : I.model->layers()) {
            detail::BatchContext ctx{I.pool, I.options, I.ws, 0};  // top-level layers share one slice
            I.runners.push_back(l->make_runner(ctx));
        }
        for (const auto& r : I.runners) r->collect_plans(I.plans);
    };
    build();
    // Without an FFT layer a long chunk buys nothing: every layer streams its activations through memory once per
    // chunk, so short chunks that stay in L2 are faster (and smaller). FFT layers want long chunks (outputs per
    // transform), so the chunk is shortened only when no layer runs as FFT.
    const bool any_fft = std::any_of(impl_->plans.begin(), impl_->plans.end(), [](const LayerPlan& p) { return p.backend == "fft"; });
    if (!any_fft && impl_->options.chunk_frames > kRecurrenceChunk) {
        impl_->options.chunk_frames = kRecurrenceChunk;
        build();
    }
    impl_->ws.buf.assign(impl_->ws.high_water, 0.0f);
    const std::size_t act = impl_->options.chunk_frames * impl_->model->max_width();
    impl_->a.assign(act, 0.0f);
    impl_->b.assign(act, 0.0f);
}

Batch::~Batch() = default;
Batch::Batch(Batch&&) noexcept = default;
Batch& Batch::operator=(Batch&&) noexcept = default;

void Batch::process(const float* in, float* out, std::size_t frames) {
    auto& I = *impl_;
    const auto& info = I.model->info();
    const std::size_t cin = info.in_channels, cout = info.out_channels;
    while (frames > 0) {
        const std::size_t n = std::min(frames, I.options.chunk_frames);
        for (std::size_t i = 0; i < n * cin; ++i) {
            const float x = in[i];
            if (std::isfinite(x)) {
                I.a[i] = x;
            } else {
                I.a[i] = 0.0f;
                ++I.nonfinite;
            }
        }
        float* cur = I.a.data();
        for (auto& r : I.runners) {
            float* dst = (cur == I.a.data()) ? I.b.data() : I.a.data();
            r->run(cur, dst, n);
            cur = dst;
        }
        std::memcpy(out, cur, n * cout * sizeof(float));
        in += n * cin;
        out += n * cout;
        frames -= n;
        I.frames += n;
    }
}

std::vector<float> Batch::run(std::span<const float> in) {
    const auto& info = impl_->model->info();
    if (in.size() % info.in_channels != 0)
        throw UsageError("Batch::run: " + std::to_string(in.size()) + " samples is not a whole number of " +
                         std::to_string(info.in_channels) + "-channel frames");
    const std::size_t frames = in.size() / info.in_channels;
    std::vector<float> out(frames * info.out_channels);
    process(in.data(), out.data(), frames);
    return out;
}

void Batch::reset() {
    for (auto& r : impl_->runners) r->reset();
    impl_->frames = 0;
}

std::size_t Batch::state_bytes() const noexcept {
    return sizeof(state_format::Header) + impl_->model->info().state_floats * sizeof(float);
}

void Batch::save_state(std::span<std::byte> dst) const {
    if (dst.size() < state_bytes()) throw UsageError("save_state: buffer too small");
    const auto& m = *impl_->model;
    std::vector<float> s(m.info().state_floats);
    std::size_t off = 0;
    for (std::size_t i = 0; i < impl_->runners.size(); ++i) {
        impl_->runners[i]->save(s.data() + off);
        off += m.layers()[i]->state_size();
    }
    const state_format::Header h{state_format::magic, state_format::version, m.fingerprint(), s.size(), impl_->frames};
    std::memcpy(dst.data(), &h, sizeof h);
    std::memcpy(dst.data() + sizeof h, s.data(), s.size() * sizeof(float));
}

void Batch::load_state(std::span<const std::byte> src) {
    const auto& m = *impl_->model;
    state_format::Header h{};
    if (src.size() < sizeof h) throw UsageError("load_state: buffer too small for a state header");
    std::memcpy(&h, src.data(), sizeof h);
    if (h.magic != state_format::magic || h.version != state_format::version) throw UsageError("load_state: not an ssmstream state");
    if (h.model_fingerprint != m.fingerprint()) throw UsageError("load_state: the state was saved from a different model");
    if (h.floats != m.info().state_floats || src.size() < state_bytes()) throw UsageError("load_state: state size does not match the model");
    std::vector<float> s(h.floats);
    std::memcpy(s.data(), src.data() + sizeof h, s.size() * sizeof(float));
    for (float v : s)
        if (!std::isfinite(v)) throw UsageError("load_state: the saved state holds NaN or Inf");
    std::size_t off = 0;
    for (std::size_t i = 0; i < impl_->runners.size(); ++i) {
        impl_->runners[i]->load(s.data() + off);
        off += m.layers()[i]->state_size();
    }
    impl_->frames = h.frames;
}

const std::vector<LayerPlan>& Batch::plan() const noexcept { return impl_->plans; }
std::size_t Batch::threads() const noexcept { return impl_->pool.size(); }
const Model& Batch::model() const noexcept { return *impl_->model; }
std::uint64_t Batch::nonfinite_count() const noexcept { return impl_->nonfinite; }

}  // namespace ssm
