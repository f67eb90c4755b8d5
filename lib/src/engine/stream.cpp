#include <algorithm>
#include <cmath>
#include <cstring>

#include "layers/layer.hpp"
#include "ssmstream/error.hpp"
#include "ssmstream/stream.hpp"

namespace ssm {

Stream::Stream(std::shared_ptr<const Model> model, NonFinitePolicy policy) : model_(std::move(model)), policy_(policy) {
    if (!model_) throw UsageError("Stream needs a model");
}
Stream::~Stream() = default;
Stream::Stream(Stream&& o) noexcept
    : model_(std::move(o.model_)), policy_(o.policy_), spec_(o.spec_), prepared_(o.prepared_), state_(std::move(o.state_)),
      scratch_(std::move(o.scratch_)), state_offset_(std::move(o.state_offset_)), scratch_offset_(std::move(o.scratch_offset_)),
      act_size_(o.act_size_), nonfinite_(o.nonfinite_.load()), frames_(o.frames_) {}
Stream& Stream::operator=(Stream&& o) noexcept {
    model_ = std::move(o.model_);
    policy_ = o.policy_;
    spec_ = o.spec_;
    prepared_ = o.prepared_;
    state_ = std::move(o.state_);
    scratch_ = std::move(o.scratch_);
    state_offset_ = std::move(o.state_offset_);
    scratch_offset_ = std::move(o.scratch_offset_);
    act_size_ = o.act_size_;
    nonfinite_.store(o.nonfinite_.load());
    frames_ = o.frames_;
    return *this;
}

void Stream::prepare(const ProcessSpec& spec) {
    const auto& info = model_->info();
    if (spec.max_block == 0 || spec.max_block > (1u << 20)) throw UsageError("max_block must be in [1, 2^20]");
    if (info.sample_rate > 0 && spec.sample_rate > 0 && std::abs(spec.sample_rate - info.sample_rate) > 1e-6)
        throw UsageError("model '" + info.name + "' runs at " + std::to_string(static_cast<long>(info.sample_rate)) +
                         " Hz but the stream is " + std::to_string(static_cast<long>(spec.sample_rate)) + " Hz; resample first");
    if (spec.channels != 0 && spec.channels != info.in_channels)
        throw UsageError("model '" + info.name + "' takes " + std::to_string(info.in_channels) + " channel(s), the stream has " +
                         std::to_string(spec.channels));
    spec_ = spec;
    spec_.channels = info.in_channels;
    const auto& layers = model_->layers();
    state_offset_.clear();
    std::size_t s = 0, inner = 0;
    for (const auto& l : layers) {
        state_offset_.push_back(s);
        s += l->state_size();
        inner = std::max(inner, l->scratch_size(spec.max_block));
    }
    act_size_ = spec.max_block * model_->max_width();
    state_.assign(s, 0.0f);
    scratch_.assign(2 * act_size_ + inner, 0.0f);
    prepared_ = true;
    frames_ = 0;
    nonfinite_.store(0);
}

void Stream::reset() noexcept {
    std::fill(state_.begin(), state_.end(), 0.0f);
    frames_ = 0;
}

void Stream::process(const float* in, float* out, std::size_t frames) noexcept {
    const auto& info = model_->info();
    if (!prepared_) {
        std::fill(out, out + frames * info.out_channels, 0.0f);
        return;
    }
    const auto& layers = model_->layers();
    const std::size_t cin = info.in_channels, cout = info.out_channels;
    float* a = scratch_.data();
    float* b = a + act_size_;
    float* inner = b + act_size_;
    while (frames > 0) {
        const std::size_t n = std::min(frames, spec_.max_block);
        std::uint64_t bad = 0;
        for (std::size_t i = 0; i < n * cin; ++i) {
            const float x = in[i];
            const bool ok = std::isfinite(x);
            bad += ok ? 0 : 1;
            a[i] = ok ? x : 0.0f;
        }
        if (bad) {
            nonfinite_.fetch_add(bad, std::memory_order_relaxed);
            if (policy_ == NonFinitePolicy::reset_state) std::fill(state_.begin(), state_.end(), 0.0f);
        }
        float* cur = a;
        for (std::size_t i = 0; i < layers.size(); ++i) {
            float* dst = (cur == a) ? b : a;
            layers[i]->step(cur, dst, n, state_.data() + state_offset_[i], inner);
            cur = dst;
        }
        std::memcpy(out, cur, n * cout * sizeof(float));
        in += n * cin;
        out += n * cout;
        frames -= n;
        frames_ += n;
    }
}

std::size_t Stream::state_bytes() const noexcept {
    return sizeof(state_format::Header) + model_->info().state_floats * sizeof(float);
}

void Stream::save_state(std::span<std::byte> dst) const {
    if (!prepared_) throw UsageError("save_state before prepare");
    if (dst.size() < state_bytes()) throw UsageError("save_state: buffer of " + std::to_string(dst.size()) + " bytes, need " + std::to_string(state_bytes()));
    const state_format::Header h{state_format::magic, state_format::version, model_->fingerprint(), state_.size(), frames_};
    std::memcpy(dst.data(), &h, sizeof h);
    std::memcpy(dst.data() + sizeof h, state_.data(), state_.size() * sizeof(float));
}

void Stream::load_state(std::span<const std::byte> src) {
    if (!prepared_) throw UsageError("load_state before prepare");
    state_format::Header h{};
    if (src.size() < sizeof h) throw UsageError("load_state: buffer too small for a state header");
    std::memcpy(&h, src.data(), sizeof h);
    if (h.magic != state_format::magic || h.version != state_format::version) throw UsageError("load_state: not an ssmstream state (bad magic or version)");
    if (h.model_fingerprint != model_->fingerprint()) throw UsageError("load_state: the state was saved from a different model");
    if (h.floats != state_.size() || src.size() < state_bytes()) throw UsageError("load_state: state size does not match the model");
    std::vector<float> tmp(state_.size());
    std::memcpy(tmp.data(), src.data() + sizeof h, tmp.size() * sizeof(float));
    for (float v : tmp)
        if (!std::isfinite(v)) throw UsageError("load_state: the saved state holds NaN or Inf");
    state_ = std::move(tmp);
    frames_ = h.frames;
}

}  // namespace ssm
