#pragma once
/** @file The PortAudio callback of ssm-denoise and what it shares with the other threads.
 *
 * The callback only moves samples: de-interleave the device's input (or take the file's samples from a ring), run
 * `Engine::process`, copy the result to every output channel, and count what the device reports (xruns, the
 * input-to-output time). It does not allocate, lock, make a system call or throw; tests call it directly under a
 * counting allocator.
 */
#include <portaudio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine.hpp"
#include "ring.hpp"

namespace ssm::denoise {

struct CallbackContext {
    /** Sizes the scratch for `block` frames. `in_channels` = 0 when the input is a file (then `file` is set). */
    CallbackContext(Engine& e, int in_ch, int out_ch, SpscRing* file_ring, const std::atomic<bool>* file_eof_flag);

    Engine* engine;
    int in_channels, out_channels;
    SpscRing* file;                     ///< the file's samples at the device rate (file mode), else null
    const std::atomic<bool>* file_eof;  ///< set by the reader once the whole file is in `file`
    std::vector<float> in_mono, out_mono;

    std::atomic<std::uint64_t> callbacks{0};
    std::atomic<std::uint64_t> xruns{0};           ///< blocks the device flagged (input/output under/overflow)
    std::atomic<std::uint64_t> file_underruns{0};  ///< blocks the file reader did not fill in time
    std::atomic<std::uint64_t> file_frames{0};     ///< file frames played
    std::atomic<std::uint64_t> after_eof{0};       ///< frames played since the file ran out (its latency tail)
    std::atomic<std::uint64_t> host_frames{0};     ///< the most frames the host passed in one callback
    std::atomic<double> device_latency{-1.0};      ///< output DAC time - input ADC time of the last block (s)
};

/** The PaStreamCallback; `user` is a CallbackContext. */
int denoise_callback(const void* input, void* output, unsigned long frames, const PaStreamCallbackTimeInfo* time,
                     PaStreamCallbackFlags flags, void* user);

}  // namespace ssm::denoise
