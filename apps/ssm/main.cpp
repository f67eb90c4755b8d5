// ssm — the command-line face of ssmstream: info, run (files), stream (stdin/stdout), convert, design.
// Every external input is validated here; a fault prints one line on stderr and exits non-zero, and no output
// file appears unless the run completed.
#include <samplerate.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "convert.hpp"
#include "design.hpp"
#include "gpu.hpp"
#include "hippo.hpp"
#include "lm_run.hpp"
#include "signal_io.hpp"
#include "ssmstream/ssmstream.hpp"

namespace fs = std::filesystem;
using namespace ssm;
using namespace ssm::app;

namespace {

// libsamplerate over interleaved chunks, streaming (state kept between calls).
class Resampler {
public:
    Resampler(std::size_t channels, double from, double to) : ch_(channels), ratio_(to / from) {
        int err = 0;
        st_ = src_new(SRC_SINC_MEDIUM_QUALITY, static_cast<int>(channels), &err);
        if (!st_) throw Error(std::string("libsamplerate: ") + src_strerror(err));
    }
    ~Resampler() { src_delete(st_); }
    Resampler(const Resampler&) = delete;
    Resampler& operator=(const Resampler&) = delete;
    /** Appends the resampled frames of `in` to `out`. */
    void process(const float* in, std::size_t frames, std::vector<float>& out, bool last) {
        std::size_t used = 0;
        for (;;) {
            const std::size_t room = static_cast<std::size_t>(std::ceil(static_cast<double>(frames - used) * ratio_)) + 256;
            const std::size_t base = out.size();
            out.resize(base + room * ch_);
            SRC_DATA d{};
            d.data_in = in + used * ch_;
            d.input_frames = static_cast<long>(frames - used);
            d.data_out = out.data() + base;
            d.output_frames = static_cast<long>(room);
            d.end_of_input = last ? 1 : 0;
            d.src_ratio = ratio_;
            if (int e = src_process(st_, &d)) throw Error(std::string("libsamplerate: ") + src_strerror(e));
            out.resize(base + static_cast<std::size_t>(d.output_frames_gen) * ch_);
            used += static_cast<std::size_t>(d.input_frames_used);
            if (used >= frames && (!last || d.output_frames_gen == 0)) break;
        }
    }

private:
    SRC_STATE* st_ = nullptr;
    std::size_t ch_;
    double ratio_;
};

double peak_rss_mb() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

class Progress {
public:
    Progress(std::int64_t total, double rate, bool on) : total_(total), rate_(rate), on_(on && total > 0 && ::isatty(2)) {}
    void update(std::int64_t done, double seconds) {
        if (!on_) return;
        const auto now = std::chrono::steady_clock::now();
        if (now - last_ < std::chrono::milliseconds(200) && done < total_) return;
        last_ = now;
        const double f = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
        const int w = 30, fill = static_cast<int>(f * w);
        const double rt = seconds > 0 && rate_ > 0 ? static_cast<double>(done) / rate_ / seconds : 0;
        std::fprintf(stderr, "\r[%s%s] %5.1f%%  %.1f s  %.0fx real time ", std::string(fill, '#').c_str(),
                     std::string(w - fill, ' ').c_str(), 100 * f, seconds, rt);
        if (done >= total_) std::fprintf(stderr, "\n");
    }
    void end() {
        if (on_) std::fprintf(stderr, "\n");
    }

private:
    std::int64_t total_;
    double rate_;
    bool on_;
    std::chrono::steady_clock::time_point last_{};
};

// One engine per independent signal: a Stream (recurrent view) or a Batch (whole-sequence view, CPU or GPU).
struct Engine {
    std::optional<Stream> stream;
    std::optional<Batch> batch;
    std::unique_ptr<cuda::ModuleEngine> gpu;
    std::size_t block = 512;
    void process(const float* in, float* out, std::size_t frames, std::size_t cin, std::size_t cout) {
        if (gpu) {
            gpu->process(in, out, frames);
            return;
        }
        if (batch) {
            batch->process(in, out, frames);
            return;
        }
        for (std::size_t t = 0; t < frames; t += block) stream->process(in + t * cin, out + t * cout, std::min(block, frames - t));
    }
};

struct RunOptions {
    std::string backend = "auto";
    std::size_t block = 512;
    std::size_t threads = 0;
    bool json = false, quiet = false;
    std::string nonfinite = "error";
    double rate = 0;
    bool zero_phase = false;
};

int cmd_info(const fs::path& path, bool json) {
    const auto m = load_model(path);  // a native file or a checkpoint directory
    const auto& i = m->info();
    if (json) {
        nlohmann::json j = {{"name", i.name}, {"description", i.description}, {"sample_rate", i.sample_rate},
                            {"in_channels", i.in_channels}, {"out_channels", i.out_channels}, {"parameters", i.parameters},
                            {"weight_bytes", i.weight_bytes},
                            {"state_bytes", i.state_floats * 4}, {"latency_samples", i.latency_samples}, {"layers", i.layers}};
        std::cout << j.dump(2) << "\n";
        return 0;
    }
    std::printf("model        %s\n", i.name.c_str());
    if (!i.description.empty()) std::printf("description  %s\n", i.description.c_str());
    std::printf("file         %s\n", path.c_str());
    if (i.sample_rate > 0) std::printf("sample rate  %g Hz\n", i.sample_rate); else std::printf("sample rate  any\n");
    std::printf("channels     %zu in, %zu out\n", i.in_channels, i.out_channels);
    std::printf("parameters   %zu\n", i.parameters);
    std::printf("weights      %.1f MB in memory%s\n", static_cast<double>(i.weight_bytes) / 1e6,
                i.weight_bytes < i.parameters * 4 ? " (BF16 matrices kept as BF16)" : "");
    std::printf("state        %zu bytes per stream (%zu floats)\n", i.state_floats * 4, i.state_floats);
    std::printf("latency      %zu samples%s\n", i.latency_samples, i.latency_samples == 0 ? " (causal, zero algorithmic latency)" : "");
    std::printf("layers\n");
    for (const auto& l : i.layers) std::printf("  %s\n", l.c_str());
    return 0;
}

int cmd_run(const fs::path& model_path, const fs::path& in_path, const fs::path& out_path, const RunOptions& o) {
    if (o.zero_phase) {
        if (o.backend != "auto" || o.json) throw UsageError("--zero-phase runs offline forward-backward; it takes no --backend or --json");
        return run_zero_phase(model_path, in_path, out_path, {o.nonfinite, o.rate, o.quiet});
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto model = load_model(model_path);
    if (is_checkpoint_dir(model_path) || is_token_npy(in_path)) {  // a language model: token ids in, logits out
        if (o.backend == "cuda") throw UsageError("--backend cuda: language models (Mamba) have no GPU path in `ssm run` yet");
        return run_tokens(model, model_path, in_path, out_path, {o.backend, o.block, o.threads, o.json, o.quiet});
    }
    const auto& mi = model->info();
    // --backend cuda must run on the GPU or fail saying why; auto takes the GPU only for long inputs of a model it
    // supports, and says so.
    bool use_gpu = o.backend == "cuda";
    const cuda::ModuleApi* gpu = nullptr;
    if (use_gpu) {
        std::string why;
        if (!(gpu = cli::gpu_module(why))) throw UsageError("--backend cuda: " + why);
        if (gpu->device_count() == 0) throw UsageError("--backend cuda: no CUDA device found");
        if (auto reason = gpu->unsupported_reason(model_path); !reason.empty()) throw UsageError("--backend cuda: " + reason);
    }
    const Backend backend = use_gpu ? Backend::automatic : backend_from_string(o.backend);
    if (o.nonfinite != "error" && o.nonfinite != "zero") throw UsageError("--nonfinite must be error or zero");
    if (o.block == 0 || o.block > (1u << 20)) throw UsageError("--block must be in [1, 1048576]");
    if (fs::exists(out_path) && fs::equivalent(in_path, out_path)) throw UsageError("output would overwrite the input");
    auto reader = open_reader(in_path);
    const auto info = reader->info();
    if (info.frames == 0) throw Error(in_path.string() + ": zero-length input, nothing to process");
    double file_rate = info.sample_rate;
    if (o.rate > 0) {
        if (file_rate > 0 && std::abs(file_rate - o.rate) > 1e-6)
            throw UsageError("--rate " + std::to_string(o.rate) + " contradicts the file's own rate " + std::to_string(file_rate));
        file_rate = o.rate;
    }
    if (file_rate <= 0) file_rate = mi.sample_rate;  // time series without a rate: the model's
    const bool resample = mi.sample_rate > 0 && file_rate > 0 && std::abs(file_rate - mi.sample_rate) > 1e-6;
    const std::size_t cf = info.channels;
    bool per_channel = false;
    if (cf == mi.in_channels) per_channel = false;
    else if (mi.in_channels == 1) per_channel = true;
    else
        throw UsageError(in_path.string() + ": " + std::to_string(cf) + " channel(s), but model '" + mi.name + "' takes " +
                         std::to_string(mi.in_channels) + " (or 1, run per channel)");
    const std::size_t engines_n = per_channel ? cf : 1;
    // Only a long input on a machine with a GPU device node loads the CUDA module (and its libraries) at all.
    if (o.backend == "auto" && info.frames >= (1 << 22) && cli::gpu_device_node_present()) {
        std::string why;
        if ((gpu = cli::gpu_module(why)) && gpu->device_count() > 0) {
            why = gpu->unsupported_reason(model_path);
            use_gpu = why.empty();
            if (!o.quiet)
                std::fprintf(stderr, "ssm: %s\n", use_gpu ? ("long input: running on the GPU (" + gpu->device_name(0) + "); --backend fft for the CPU").c_str()
                                                          : ("GPU present but not used: " + why).c_str());
        }
    }
    const std::size_t cin = mi.in_channels, cout = mi.out_channels, out_ch = engines_n * cout;
    if (resample && !o.quiet)
        std::fprintf(stderr, "ssm: resampling %g Hz -> %g Hz for the model, and back to %g Hz (libsamplerate)\n", file_rate,
                     mi.sample_rate, file_rate);
    if (per_channel && cf > 1 && !o.quiet)
        std::fprintf(stderr, "ssm: %zu file channels, each through its own stream of the 1-channel model\n", cf);

    std::vector<Engine> engines(engines_n);
    for (auto& e : engines) {
        e.block = o.block;
        if (use_gpu) {
            e.gpu = gpu->create(model_path);
            continue;
        }
        if (backend == Backend::recurrence && o.backend == "stream") {
            e.stream.emplace(model, NonFinitePolicy::zero_sample);
            e.stream->prepare({mi.sample_rate, o.block, 0});
        } else {
            BatchOptions bo;
            bo.backend = backend;
            bo.threads = o.threads;
            e.batch.emplace(model, bo);
        }
    }
    if (engines.front().batch && !o.quiet)
        for (const auto& p : engines.front().batch->plan())
            if (backend == Backend::fft && p.backend == "recurrence" && p.layer.rfind("s4d", 0) == 0)
                std::fprintf(stderr, "ssm: note: %s runs as recurrence: %s\n", p.layer.c_str(), p.reason.c_str());

    std::vector<std::string> names;
    if (cout == 1 && out_ch == info.names.size()) names = info.names;
    auto writer = open_writer(out_path, out_ch, file_rate, info.frames, info, names);
    std::unique_ptr<Resampler> rs_in, rs_out;
    if (resample) {
        rs_in = std::make_unique<Resampler>(cf, file_rate, mi.sample_rate);
        rs_out = std::make_unique<Resampler>(out_ch, mi.sample_rate, file_rate);
    }
    std::size_t chunk = 1 << 15;
    if (engines.front().gpu) chunk = engines.front().gpu->chunk_frames();  // one transfer and launch sequence per chunk
    std::vector<float> buf(chunk * cf), rin, model_in, model_out, mixed, rout, one_in, one_out;
    std::int64_t done = 0, written = 0;
    std::uint64_t nonfinite = 0;
    // Resampling there and back may round the length by a frame; the output keeps the input's length exactly.
    auto emit = [&](const float* y, std::size_t frames) {
        if (rs_out && info.frames > 0) frames = static_cast<std::size_t>(std::min<std::int64_t>(static_cast<std::int64_t>(frames), info.frames - written));
        if (frames) writer->write(y, frames);
        written += static_cast<std::int64_t>(frames);
    };
    Progress progress(info.frames, file_rate, !o.quiet);
    auto run_model = [&](const float* x, std::size_t frames) {  // x: frames × cf at the model rate
        mixed.resize(frames * out_ch);
        if (!per_channel) {
            engines[0].process(x, mixed.data(), frames, cin, cout);
        } else {
            one_in.resize(frames);
            one_out.resize(frames * cout);
            for (std::size_t c = 0; c < cf; ++c) {
                for (std::size_t t = 0; t < frames; ++t) one_in[t] = x[t * cf + c];
                engines[c].process(one_in.data(), one_out.data(), frames, 1, cout);
                for (std::size_t t = 0; t < frames; ++t)
                    for (std::size_t k = 0; k < cout; ++k) mixed[t * out_ch + c * cout + k] = one_out[t * cout + k];
            }
        }
        if (rs_out) {
            rout.clear();
            rs_out->process(mixed.data(), frames, rout, false);
            emit(rout.data(), rout.size() / out_ch);
        } else {
            emit(mixed.data(), frames);
        }
    };
    for (;;) {
        const std::size_t n = reader->read(buf.data(), chunk);
        if (n == 0) break;
        for (std::size_t i = 0; i < n * cf; ++i) {
            if (!std::isfinite(buf[i])) {
                if (o.nonfinite == "error")
                    throw Error(in_path.string() + ": non-finite sample (" + (std::isnan(buf[i]) ? "NaN" : "Inf") + ") at frame " +
                                std::to_string(done + static_cast<std::int64_t>(i / cf)) + ", channel " + std::to_string(i % cf) +
                                "; clean the input or pass --nonfinite zero");
                buf[i] = 0.0f;
                ++nonfinite;
            }
        }
        if (rs_in) {
            rin.clear();
            rs_in->process(buf.data(), n, rin, false);
            if (!rin.empty()) run_model(rin.data(), rin.size() / cf);
        } else {
            run_model(buf.data(), n);
        }
        done += static_cast<std::int64_t>(n);
        progress.update(done, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    if (done == 0) throw Error(in_path.string() + ": zero-length input, nothing to process");
    if (rs_in) {  // drain both resamplers
        rin.clear();
        rs_in->process(buf.data(), 0, rin, true);
        if (!rin.empty()) run_model(rin.data(), rin.size() / cf);
        rout.clear();
        rs_out->process(mixed.data(), 0, rout, true);
        emit(rout.data(), rout.size() / out_ch);
        if (written < done) {
            std::vector<float> zeros(static_cast<std::size_t>(done - written) * out_ch, 0.0f);
            emit(zeros.data(), static_cast<std::size_t>(done - written));
        }
    }
    writer->commit();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (nonfinite && !o.quiet) std::fprintf(stderr, "ssm: %llu non-finite input samples replaced by 0\n", static_cast<unsigned long long>(nonfinite));
    if (o.json) {
        nlohmann::json plans = nlohmann::json::array();
        const std::vector<LayerPlan>* plan = engines.front().batch ? &engines.front().batch->plan() : nullptr;
        if (engines.front().gpu) plan = &engines.front().gpu->plan();
        if (plan)
            for (const auto& p : *plan)
                plans.push_back({{"layer", p.layer}, {"backend", p.backend}, {"reason", p.reason}, {"kernel_length", p.kernel_length}, {"fft_size", p.fft_size}, {"outputs_per_fft", p.outputs_per_fft}});
        const double dur = static_cast<double>(done) / file_rate;
        nlohmann::json j = {{"model", model_path.string()}, {"input", in_path.string()}, {"output", out_path.string()},
                            {"frames", done}, {"channels", cf}, {"sample_rate", file_rate}, {"resampled", resample},
                            {"backend", use_gpu ? std::string("cuda") : o.backend}, {"threads", engines.front().batch ? engines.front().batch->threads() : 1},
                            {"seconds", secs}, {"signal_seconds", dur}, {"realtime_factor", dur > 0 ? secs / dur : 0},
                            {"x_realtime", secs > 0 ? dur / secs : 0}, {"nonfinite_replaced", nonfinite},
                            {"peak_rss_mb", peak_rss_mb()}, {"plan", plans}};
        std::cout << j.dump(2) << "\n";
    } else if (!o.quiet) {
        std::fprintf(stderr, "ssm: %lld frames in %.2f s (%.0fx real time) -> %s\n", static_cast<long long>(done), secs,
                     secs > 0 ? static_cast<double>(done) / file_rate / secs : 0.0, out_path.c_str());
    }
    return 0;
}

int cmd_stream(const fs::path& model_path, std::size_t block, double rate) {
    const auto model = load_model(model_path);
    const auto& mi = model->info();
    Stream s(model);
    s.prepare({rate, block, 0});
    std::vector<float> in(block * mi.in_channels), out(block * mi.out_channels);
    const std::size_t frame_bytes = mi.in_channels * sizeof(float);
    std::vector<char> raw(block * frame_bytes);
    std::size_t have = 0;
    for (;;) {
        const ssize_t r = ::read(0, raw.data() + have, raw.size() - have);
        if (r < 0) throw Error(std::string("stdin: ") + std::strerror(errno));
        have += static_cast<std::size_t>(r);
        const std::size_t frames = have / frame_bytes;
        if (frames > 0 && (r == 0 || frames == block || true)) {
            std::memcpy(in.data(), raw.data(), frames * frame_bytes);
            s.process(in.data(), out.data(), frames);
            if (std::fwrite(out.data(), sizeof(float) * mi.out_channels, frames, stdout) != frames) throw Error("stdout: write failed");
            std::fflush(stdout);
            std::memmove(raw.data(), raw.data() + frames * frame_bytes, have - frames * frame_bytes);
            have -= frames * frame_bytes;
        }
        if (r == 0) break;
    }
    if (have != 0) throw Error("stdin ended inside a frame (" + std::to_string(have) + " stray bytes): truncated stream");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ssm — run trained state-space models on signals, live or offline (ssmstream " + std::string(version_string) + ")"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string(version_string));

    std::string model, input, output;
    bool json = false;
    auto* info = app.add_subcommand("info", "Show a model's architecture, parameters, rate, channels, state size and latency");
    info->add_option("MODEL", model, "native model file (.safetensors)")->required();
    info->add_flag("--json", json, "machine-readable output");

    RunOptions ro;
    auto* run = app.add_subcommand("run", "Run a model over a file: audio (WAV/FLAC/OGG), .npy (frames x channels) or CSV");
    run->add_option("MODEL", model, "native model file")->required();
    run->add_option("IN", input, "input signal")->required();
    run->add_option("OUT", output, "output signal (format from its extension)")->required();
    run->add_option("--backend", ro.backend,
                    "auto (per layer by cost model; the GPU for inputs of 2^22+ frames when built with CUDA), stream "
                    "(recurrent view), fft, cuda (the GPU batch backend)")
        ->check(CLI::IsMember({"auto", "stream", "fft", "cuda"}));
    run->add_option("--block", ro.block, "frames per process call for --backend stream")->check(CLI::Range(1, 1 << 20));
    run->add_option("--threads", ro.threads, "batch threads (0 = all cores)");
    run->add_option("--rate", ro.rate, "sample rate of a .npy/.csv input (default: the model's)")->check(CLI::PositiveNumber);
    run->add_option("--nonfinite", ro.nonfinite, "NaN/Inf in the input: error (default) or zero")->check(CLI::IsMember({"error", "zero"}));
    run->add_flag("--json", ro.json, "print a JSON timing summary on stdout");
    run->add_flag("-q,--quiet", ro.quiet, "no progress bar or notes");
    run->add_flag("--zero-phase", ro.zero_phase, "offline zero-phase filtering (forward-backward, as scipy sosfiltfilt); designed filters only");

    std::size_t sblock = 256;
    double srate = 0;
    auto* stream = app.add_subcommand("stream", "Stream raw float32 interleaved frames from stdin to stdout (recurrent view)");
    stream->add_option("MODEL", model, "native model file")->required();
    stream->add_option("--block", sblock, "most frames per process call")->check(CLI::Range(1, 1 << 20));
    stream->add_option("--rate", srate, "the signal's sample rate (checked against the model's)");

    ConvertOptions co;
    auto* conv = app.add_subcommand("convert", "Write the native file from a reference checkpoint (S4 example state_dict as safetensors) or re-encode one");
    conv->add_option("IN", input, "checkpoint (.safetensors)")->required();
    conv->add_option("OUT", output, "native model file to write")->required();
    conv->add_option("--dtype", co.dtype, "f32, f16, bf16 or f64")->check(CLI::IsMember({"f32", "f16", "bf16", "f64"}));
    conv->add_flag("--prenorm", co.prenorm, "S4 example: the model was trained with --prenorm");
    conv->add_option("--disc", co.disc, "S4D discretisation: zoh or bilinear")->check(CLI::IsMember({"zoh", "bilinear"}));
    conv->add_option("--activation", co.activation, "S4D activation (gelu)");
    conv->add_option("--rate", co.sample_rate, "the sample rate the model was trained at (Hz)");
    conv->add_option("--name", co.name, "model name");

    DesignOptions dop;
    auto* des = add_design_command(app, dop);
    HippoOptions hop;
    auto* hip = add_hippo_command(app, hop);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        std::fprintf(stderr, "ssm: error: %s (see ssm --help)\n", e.what());
        return 2;
    }
    try {
        if (*info) return cmd_info(model, json);
        if (*run) return cmd_run(model, input, output, ro);
        if (*stream) return cmd_stream(model, sblock, srate);
        if (*des) return cmd_design(dop);
        if (*hip) return cmd_hippo(hop);
        if (*conv && is_checkpoint_dir(input)) {
            std::fprintf(stderr, "ssm: %s -> %s\n", convert_checkpoint(input, output, co.dtype).c_str(), output.c_str());
            return 0;
        }
        if (*conv) {
            std::fprintf(stderr, "ssm: %s -> %s\n", convert_model(input, output, co).c_str(), output.c_str());
            return 0;
        }
    } catch (const UsageError& e) {
        std::fprintf(stderr, "ssm: error: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ssm: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
