#include "callback.hpp"

#include <algorithm>

namespace ssm::denoise {

CallbackContext::CallbackContext(Engine& e, int in_ch, int out_ch, SpscRing* file_ring,
                                 const std::atomic<bool>* file_eof_flag)
    : engine(&e), in_channels(in_ch), out_channels(out_ch), file(file_ring), file_eof(file_eof_flag),
      in_mono(e.config().block, 0.0f), out_mono(e.config().block, 0.0f) {}

int denoise_callback(const void* input, void* output, unsigned long frames_ul, const PaStreamCallbackTimeInfo* time,
                     PaStreamCallbackFlags flags, void* user) {
    auto& c = *static_cast<CallbackContext*>(user);
    auto* out = static_cast<float*>(output);
    const std::size_t block = c.in_mono.size();
    std::size_t frames = frames_ul;
    if (frames > c.host_frames.load(std::memory_order_relaxed)) c.host_frames.store(frames, std::memory_order_relaxed);

    if (flags & (paInputUnderflow | paInputOverflow | paOutputUnderflow | paOutputOverflow))
        c.xruns.fetch_add(1, std::memory_order_relaxed);
    if (time && time->inputBufferAdcTime > 0 && time->outputBufferDacTime > 0)
        c.device_latency.store(time->outputBufferDacTime - time->inputBufferAdcTime, std::memory_order_relaxed);

    for (std::size_t done = 0; done < frames;) {  // a host that passes more than `block` gets it in pieces
        const std::size_t n = std::min(block, frames - done);
        const float* mono = nullptr;
        if (c.file) {
            const std::size_t got = c.file->pop(c.in_mono.data(), n);
            std::fill(c.in_mono.begin() + static_cast<std::ptrdiff_t>(got), c.in_mono.begin() + static_cast<std::ptrdiff_t>(n), 0.0f);
            c.file_frames.fetch_add(got, std::memory_order_relaxed);
            if (got < n) {
                if (c.file_eof && c.file_eof->load(std::memory_order_acquire))
                    c.after_eof.fetch_add(n - got, std::memory_order_relaxed);
                else
                    c.file_underruns.fetch_add(1, std::memory_order_relaxed);
            }
            mono = c.in_mono.data();
        } else if (input && c.in_channels > 0) {
            const auto* in = static_cast<const float*>(input) + done * static_cast<std::size_t>(c.in_channels);
            for (std::size_t i = 0; i < n; ++i) c.in_mono[i] = in[i * static_cast<std::size_t>(c.in_channels)];
            mono = c.in_mono.data();
        }
        c.engine->process(mono, c.out_mono.data(), n);
        float* o = out + done * static_cast<std::size_t>(c.out_channels);
        for (std::size_t i = 0; i < n; ++i)
            for (int ch = 0; ch < c.out_channels; ++ch) o[i * static_cast<std::size_t>(c.out_channels) + static_cast<std::size_t>(ch)] = c.out_mono[i];
        done += n;
    }
    c.callbacks.fetch_add(1, std::memory_order_relaxed);
    return paContinue;
}

}  // namespace ssm::denoise
