// ssm-denoise: live denoising of a microphone (or a file) through a native ssmstream model, with PortAudio.
//
// Threads: the PortAudio callback runs the model (callback.cpp, engine.cpp: no allocation, lock or I/O); the
// recorder and the file reader run on their own threads behind lock-free rings (files.cpp); this thread reads
// keys, prints the status line, and watches the device (a stream that stops or goes silent is reopened).
#include <pa_jack.h>
#include <portaudio.h>
#include <signal.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "callback.hpp"
#include "engine.hpp"
#include "files.hpp"
#include "ssmstream/ssmstream.hpp"

namespace dn = ssm::denoise;
using Clock = std::chrono::steady_clock;

namespace {

volatile sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

struct Fatal {
    std::string what;
};

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

// ---- the terminal: raw keys in, restored on every way out ------------------------------------------------------

struct Terminal {
    bool raw = false;
    termios saved{};
    void enter() {
        if (!::isatty(STDIN_FILENO) || ::tcgetattr(STDIN_FILENO, &saved) != 0) return;
        termios t = saved;
        t.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));  // ISIG stays: Ctrl-C still reaches on_signal
        t.c_cc[VMIN] = 0;
        t.c_cc[VTIME] = 0;
        raw = ::tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0;
    }
    void leave() {
        if (raw) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
        raw = false;
    }
    /** A key pressed since the last call, or 0. */
    int key() const {
        if (!raw) return 0;
        unsigned char c = 0;
        return ::read(STDIN_FILENO, &c, 1) == 1 ? c : 0;
    }
    ~Terminal() { leave(); }
};

// ---- devices ---------------------------------------------------------------------------------------------------

std::string pa_err(PaError e) { return Pa_GetErrorText(e); }

std::string host_name(PaHostApiIndex h) {
    const PaHostApiInfo* hi = Pa_GetHostApiInfo(h);
    return hi ? hi->name : "?";
}

void list_devices() {
    const int n = Pa_GetDeviceCount();
    std::printf("PortAudio %s: %d host API(s), %d device(s)\n", Pa_GetVersionText(), Pa_GetHostApiCount(), n < 0 ? 0 : n);
    for (PaHostApiIndex h = 0; h < Pa_GetHostApiCount(); ++h)
        std::printf("  host API %d: %s (%d devices)%s\n", h, host_name(h).c_str(), Pa_GetHostApiInfo(h)->deviceCount,
                    h == Pa_GetDefaultHostApi() ? " [default]" : "");
    std::printf("%5s  %-28s %-34s %4s %4s %9s %9s\n", "index", "host API", "name", "in", "out", "rate", "low lat");
    for (int i = 0; i < n; ++i) {
        const PaDeviceInfo* d = Pa_GetDeviceInfo(i);
        std::string mark;
        if (i == Pa_GetDefaultInputDevice()) mark += " [default in]";
        if (i == Pa_GetDefaultOutputDevice()) mark += " [default out]";
        const double lat = std::max(d->defaultLowInputLatency, d->defaultLowOutputLatency);
        std::printf("%5d  %-28s %-34s %4d %4d %9.0f %7.1fms%s\n", i, host_name(d->hostApi).c_str(), d->name,
                    d->maxInputChannels, d->maxOutputChannels, d->defaultSampleRate, lat * 1e3, mark.c_str());
    }
    if (n <= 0) std::printf("no audio devices: connect one, or start a JACK server (jackd -d dummy for a test)\n");
}

/** The host API a user names (a case-insensitive part of its name: "jack", "alsa"), or -1 for any. */
PaHostApiIndex find_host_api(const std::string& spec) {
    if (spec.empty()) return -1;
    std::string names;
    for (PaHostApiIndex h = 0; h < Pa_GetHostApiCount(); ++h) {
        if (lower(host_name(h)).find(lower(spec)) != std::string::npos) return h;
        names += (names.empty() ? "" : ", ") + host_name(h);
    }
    throw Fatal{"no host API matches '" + spec + "' (PortAudio has: " + (names.empty() ? "none" : names) + ")"};
}

PaDeviceIndex find_device(const std::string& spec, bool input, PaHostApiIndex host) {
    const char* dir = input ? "input" : "output";
    auto channels = [&](const PaDeviceInfo* d) { return input ? d->maxInputChannels : d->maxOutputChannels; };
    const int n = Pa_GetDeviceCount();
    if (spec.empty()) {
        PaDeviceIndex d = paNoDevice;
        if (host >= 0) {
            const PaHostApiInfo* hi = Pa_GetHostApiInfo(host);
            d = input ? hi->defaultInputDevice : hi->defaultOutputDevice;
        } else {
            d = input ? Pa_GetDefaultInputDevice() : Pa_GetDefaultOutputDevice();
        }
        if (d == paNoDevice || d < 0)
            throw Fatal{std::string("no audio ") + dir + " device found (PortAudio sees " + std::to_string(n < 0 ? 0 : n) +
                        " device(s)); connect one, start a JACK server, or see --list-devices" +
                        (input ? "; --file plays a file instead of the microphone" : "")};
        return d;
    }
    if (std::all_of(spec.begin(), spec.end(), [](unsigned char c) { return std::isdigit(c); })) {
        const int i = std::stoi(spec);
        if (i >= n) throw Fatal{"no device " + spec + " (there are " + std::to_string(n) + "; see --list-devices)"};
        if (channels(Pa_GetDeviceInfo(i)) < 1)
            throw Fatal{std::string("device ") + spec + " (" + Pa_GetDeviceInfo(i)->name + ") has no " + dir + " channels"};
        return i;
    }
    std::vector<PaDeviceIndex> hits;
    for (int i = 0; i < n; ++i) {
        const PaDeviceInfo* d = Pa_GetDeviceInfo(i);
        if (channels(d) < 1 || (host >= 0 && d->hostApi != host)) continue;
        if (lower(d->name) == lower(spec)) return i;  // an exact name wins
        if (lower(d->name).find(lower(spec)) != std::string::npos) hits.push_back(i);
    }
    if (hits.size() == 1) return hits[0];
    if (hits.empty()) throw Fatal{std::string("no ") + dir + " device matches '" + spec + "' (see --list-devices)"};
    std::string list;
    for (auto i : hits) list += "\n  " + std::to_string(i) + ": " + Pa_GetDeviceInfo(i)->name + " (" + host_name(Pa_GetDeviceInfo(i)->hostApi) + ")";
    throw Fatal{std::string("'") + spec + "' matches several " + dir + " devices; give an index or --host-api:" + list};
}

// ---- one open stream ---------------------------------------------------------------------------------------------

struct Devices {
    PaDeviceIndex in = paNoDevice, out = paNoDevice;  // in = paNoDevice in file mode
};

struct Opened {
    PaStream* stream = nullptr;
    int in_channels = 0, out_channels = 0;
};

PaStreamParameters params(PaDeviceIndex d, int ch, double rate, std::size_t block) {
    PaStreamParameters p{};
    p.device = d;
    p.channelCount = ch;
    p.sampleFormat = paFloat32;
    // Ask for as little buffering as the block allows; the host API rounds up to what the device can do.
    p.suggestedLatency = std::max(static_cast<double>(block) / rate, 0.0);
    return p;
}

bool rate_supported(const Devices& dv, double rate) {
    const PaDeviceInfo* od = Pa_GetDeviceInfo(dv.out);
    PaStreamParameters o = params(dv.out, std::min(2, od->maxOutputChannels), rate, 256);
    if (dv.in == paNoDevice) return Pa_IsFormatSupported(nullptr, &o, rate) == paFormatIsSupported;
    PaStreamParameters i = params(dv.in, 1, rate, 256);
    return Pa_IsFormatSupported(&i, &o, rate) == paFormatIsSupported;
}

/** Whether the output device is a JACK one: JACK fixes the period itself. */
bool is_jack(PaDeviceIndex d) {
    const PaHostApiInfo* hi = Pa_GetHostApiInfo(Pa_GetDeviceInfo(d)->hostApi);
    return hi && hi->type == paJACK;
}

/** Opens (not starts) a stream; returns the PortAudio error, paNoError on success. Under JACK the callback takes
 * the server's period as it comes (PortAudio's buffer adapter would add one more block of latency to re-block it;
 * the callback cuts a period into pieces of at most `block` itself). */
PaError open_stream(const Devices& dv, double rate, std::size_t block, dn::CallbackContext& ctx, Opened& o) {
    const PaDeviceInfo* od = Pa_GetDeviceInfo(dv.out);
    o.out_channels = std::min(2, od->maxOutputChannels);
    PaStreamParameters op = params(dv.out, o.out_channels, rate, block);
    const unsigned long fpb = is_jack(dv.out) ? paFramesPerBufferUnspecified : block;
    PaError e = paNoError;
    if (dv.in == paNoDevice) {
        o.in_channels = 0;
        ctx.in_channels = 0;
        ctx.out_channels = o.out_channels;
        return Pa_OpenStream(&o.stream, nullptr, &op, rate, fpb, paClipOff, dn::denoise_callback, &ctx);
    }
    const PaDeviceInfo* id = Pa_GetDeviceInfo(dv.in);
    for (int ch : {1, std::min(2, id->maxInputChannels)}) {  // mono if the device allows, else its first channel
        PaStreamParameters ip = params(dv.in, ch, rate, block);
        o.in_channels = ch;
        ctx.in_channels = ch;
        ctx.out_channels = o.out_channels;
        e = Pa_OpenStream(&o.stream, &ip, &op, rate, fpb, paClipOff, dn::denoise_callback, &ctx);
        if (e != paInvalidChannelCount) break;
    }
    return e;
}

// ---- the status line ---------------------------------------------------------------------------------------------

std::string meter(float peak) {
    const double db = peak > 0 ? 20.0 * std::log10(peak) : -120.0;
    const int width = 12;
    const int fill = static_cast<int>(std::clamp((db + 60.0) / 60.0, 0.0, 1.0) * width + 0.5);
    std::string bar(static_cast<std::size_t>(fill), '#');
    bar.resize(static_cast<std::size_t>(width), '-');
    char b[48];
    if (db <= -99) std::snprintf(b, sizeof b, "[%s]  -inf", bar.c_str());
    else std::snprintf(b, sizeof b, "[%s] %5.1f", bar.c_str(), db);
    return b;
}

struct Totals {
    double load_sum = 0, load_max = 0;
    std::uint64_t load_n = 0;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ssm-denoise: live denoising through a native ssmstream model (PortAudio full duplex).\n"
                 "Keys while running: b or space = bypass on/off, q = quit. Ctrl-C also quits cleanly."};
    std::string model_path, in_spec, out_spec, host_spec, file_path, stats_path, client_name = "ssm-denoise";
    std::vector<std::string> record;
    double rate = 0, duration = 0, status_every = 0.25;
    std::size_t block = 0;
    bool list = false, bypass = false, quiet = false;
    app.add_flag("--list-devices", list, "list host APIs and devices, then exit");
    app.add_option("-m,--model", model_path, "native model file (.safetensors), mono in and out");
    app.add_option("-i,--input", in_spec, "input device: index or (part of) its name; default: the default input");
    app.add_option("-o,--output", out_spec, "output device: index or (part of) its name; default: the default output");
    app.add_option("--host-api", host_spec, "limit devices to one host API (e.g. jack, alsa)");
    app.add_option("-r,--rate", rate, "device sample rate; default: the model's if the device has it, else the device's")
        ->check(CLI::Range(1000.0, 768000.0));
    app.add_option("-b,--block", block, "frames per callback; default: the smallest the device sustains (probed)")
        ->check(CLI::Range(1, 8192));
    app.add_flag("--bypass", bypass, "start bypassed (the dry signal, same latency); toggle with b");
    app.add_option("--record", record, "record both sides: IN.wav OUT.wav (float WAV at the device rate)")->expected(2);
    app.add_option("-f,--file", file_path, "play this audio file through the model instead of the microphone");
    app.add_option("-d,--duration", duration, "stop after this many seconds (0 = until Ctrl-C, q or the file's end)")
        ->check(CLI::Range(0.0, 1e9));
    app.add_option("--stats-json", stats_path, "write a JSON summary here at exit (counts, latency, load)");
    app.add_option("--client-name", client_name, "client name under JACK");
    app.add_option("--status-interval", status_every, "seconds between status updates")->check(CLI::Range(0.05, 60.0));
    app.add_flag("-q,--quiet", quiet, "no status line");
    // Internal: a run that re-executed itself to reopen a lost JACK server (see the watchdog below).
    int resume_lost = 0;
    std::uint64_t resume_frames = 0;
    double resume_since = 0;
    app.add_option("--resume-lost", resume_lost)->group("");
    app.add_option("--resume-frames", resume_frames)->group("");
    app.add_option("--resume-since", resume_since)->group("");
    CLI11_PARSE(app, argc, argv);
    const bool resumed = resume_lost > 0;

    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);

    Terminal term;
    std::unique_ptr<dn::Recorder> recorder;
    std::unique_ptr<dn::FileSource> source;
    std::unique_ptr<dn::Engine> engine;
    std::unique_ptr<dn::CallbackContext> ctx;
    Opened op;
    bool pa_up = false;
    int rc = 0;
    nlohmann::json stats;
    const bool tty = ::isatty(STDERR_FILENO);

    auto pa_init = [&]() -> PaError {
        PaJack_SetClientName(client_name.c_str());
        const PaError e = Pa_Initialize();
        pa_up = e == paNoError;
        return e;
    };
    auto pa_down = [&] {
        if (op.stream) {
            Pa_AbortStream(op.stream);
            Pa_CloseStream(op.stream);
            op.stream = nullptr;
        }
        if (pa_up) Pa_Terminate();
        pa_up = false;
    };

    try {
        if (PaError e = pa_init(); e != paNoError) throw Fatal{"PortAudio cannot start: " + pa_err(e)};
        if (list) {
            list_devices();
            pa_down();
            return 0;
        }
        if (model_path.empty()) throw Fatal{"--model is required (a native .safetensors model; see --help)"};
        if (!std::filesystem::exists(model_path)) throw Fatal{"model file " + model_path + " not found"};
        auto model = ssm::Model::load(model_path);
        const auto& mi = model->info();
        if (mi.in_channels != 1 || mi.out_channels != 1)
            throw Fatal{model_path + ": the model has " + std::to_string(mi.in_channels) + " input and " +
                        std::to_string(mi.out_channels) + " output channels; ssm-denoise runs mono models"};

        double file_rate = 0;
        if (!file_path.empty()) {
            dn::FileSource probe(file_path, 48000, 16);  // checks the file before the devices, with a clear message
            file_rate = probe.file_rate();
        }
        if (resumed) {  // the device was lost: wait for it to come back, trying every second
            for (;;) {
                try {
                    const PaHostApiIndex h = find_host_api(host_spec);
                    find_device(out_spec, false, h);
                    if (file_path.empty()) find_device(in_spec, true, h);
                    break;
                } catch (const Fatal&) {
                }
                pa_down();
                if (g_stop) throw Fatal{"interrupted while waiting for the audio device to come back"};
                std::this_thread::sleep_for(std::chrono::seconds(1));
                if (PaError e = pa_init(); e != paNoError) throw Fatal{"PortAudio cannot start: " + pa_err(e)};
            }
        }
        const PaHostApiIndex host = find_host_api(host_spec);
        Devices dv;
        dv.out = find_device(out_spec, false, host);
        if (file_path.empty()) dv.in = find_device(in_spec, true, host);

        // The rate: the model's when the device has it (no resampling, least latency), else the device's own.
        if (rate > 0) {
            if (!rate_supported(dv, rate))
                throw Fatal{"the device does not support " + std::to_string(static_cast<long>(rate)) +
                            " Hz; leave out --rate to use the model's rate or the device's and resample"};
        } else if (mi.sample_rate > 0 && rate_supported(dv, mi.sample_rate)) {
            rate = mi.sample_rate;
        } else if (file_rate > 0 && rate_supported(dv, file_rate)) {
            rate = file_rate;
        } else {
            rate = Pa_GetDeviceInfo(dv.out)->defaultSampleRate;
            if (dv.in != paNoDevice && !rate_supported(dv, rate)) rate = Pa_GetDeviceInfo(dv.in)->defaultSampleRate;
            if (!rate_supported(dv, rate))
                throw Fatal{"the input and output devices share no sample rate PortAudio can open; pick devices of one "
                            "card or host API (--list-devices)"};
        }

        dn::EngineConfig cfg;
        cfg.device_rate = rate;
        auto make_engine = [&](std::size_t blk, bool with_record) {
            cfg.block = blk;
            cfg.record_frames = with_record ? static_cast<std::size_t>(rate * 10) : 0;  // 10 s of slack for the disk
            engine = std::make_unique<dn::Engine>(model, cfg);
            ctx = std::make_unique<dn::CallbackContext>(*engine, 0, 0, nullptr, nullptr);
        };

        // --block unset: the smallest power of two from 16 up that runs 0.3 s with no xrun and no model overload.
        std::string block_note = "as asked";
        if (block == 0 && is_jack(dv.out)) {  // JACK's period is the block: take what the server passes
            make_engine(8192, false);
            Opened t;
            if (open_stream(dv, rate, 8192, *ctx, t) == paNoError) {
                if (Pa_StartStream(t.stream) == paNoError) {
                    for (int i = 0; i < 100 && ctx->callbacks.load() < 4; ++i)
                        std::this_thread::sleep_for(std::chrono::milliseconds(10));
                    Pa_StopStream(t.stream);
                }
                Pa_CloseStream(t.stream);
            }
            block = static_cast<std::size_t>(ctx->host_frames.load());
            block_note = "the JACK server's period";
        }
        if (block == 0) {
            if (!quiet) std::fprintf(stderr, "ssm-denoise: probing the smallest block the device sustains...\n");
            for (std::size_t cand = 16; cand <= 2048 && !g_stop; cand *= 2) {
                make_engine(cand, false);
                Opened t;
                if (open_stream(dv, rate, cand, *ctx, t) != paNoError) continue;
                const bool started = Pa_StartStream(t.stream) == paNoError;
                if (started) std::this_thread::sleep_for(std::chrono::milliseconds(300));
                const bool ok = started && ctx->callbacks.load() > 0 && ctx->xruns.load() == 0 &&
                                engine->overloaded_blocks() == 0;
                if (started) Pa_StopStream(t.stream);
                Pa_CloseStream(t.stream);
                if (ok) {
                    block = cand;
                    break;
                }
            }
            if (block == 0) {
                block = 1024;
                block_note = "no block up to 2048 ran clean in the probe; using 1024";
            } else {
                block_note = "the smallest that ran 0.3 s clean";
            }
        }
        make_engine(block, record.size() == 2);
        engine->set_bypass(bypass);

        if (!file_path.empty()) {
            source = std::make_unique<dn::FileSource>(file_path, rate, static_cast<std::size_t>(rate * 4));
            source->start(static_cast<std::size_t>(rate * 2));
            ctx->file = &source->ring();
            ctx->file_eof = &source->eof();
        }
        if (record.size() == 2) {
            recorder = std::make_unique<dn::Recorder>(record[0], record[1], rate, resumed);
            recorder->start(engine->record_in(), engine->record_out());
        }

        if (PaError e = open_stream(dv, rate, block, *ctx, op); e != paNoError)
            throw Fatal{"cannot open the audio stream at " + std::to_string(static_cast<long>(rate)) + " Hz, block " +
                        std::to_string(block) + ": " + pa_err(e)};
        if (PaError e = Pa_StartStream(op.stream); e != paNoError) throw Fatal{"cannot start the audio stream: " + pa_err(e)};
        if (resumed)
            std::fprintf(stderr, "ssm-denoise: reopened %s after %.1f s\n", Pa_GetDeviceInfo(dv.out)->name,
                         std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() -
                             resume_since);

        const double mrate = mi.sample_rate > 0 ? mi.sample_rate : rate;
        const std::string in_name = dv.in == paNoDevice ? "file " + file_path : Pa_GetDeviceInfo(dv.in)->name;
        const std::string out_name = Pa_GetDeviceInfo(dv.out)->name;
        const std::string api_name = host_name(Pa_GetDeviceInfo(dv.out)->hostApi);
        if (!quiet) {
            std::fprintf(stderr, "ssm-denoise: %s (%zu params) | %s -> %s via %s | %.0f Hz, block %zu (%s)\n",
                         model_path.c_str(), mi.parameters, in_name.c_str(), out_name.c_str(), api_name.c_str(), rate,
                         block, block_note.c_str());
            if (engine->resampling())
                std::fprintf(stderr, "ssm-denoise: resampling %.0f Hz <-> the model's %.0f Hz in real time "
                             "(libsamplerate), adding %zu frames = %.2f ms\n", rate, mrate, engine->resampler_latency(),
                             1e3 * static_cast<double>(engine->resampler_latency()) / rate);
            if (term.raw || ::isatty(STDIN_FILENO)) std::fprintf(stderr, "keys: b/space = bypass, q = quit\n");
        }
        term.enter();

        // ---- the loop: keys, status, watchdog ----
        const auto t_start = Clock::now();
        auto t_status = t_start;
        std::uint64_t last_cb = 0, reopens = 0, lost_events = 0;
        auto t_last_cb = t_start;
        Totals tot;
        const double stall_s = std::max(1.0, 20.0 * static_cast<double>(block) / rate);
        bool done_file = false;
        double device_latency_s = -1;
        while (!g_stop) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            const auto now = Clock::now();
            const double elapsed = std::chrono::duration<double>(now - t_start).count();
            for (int k = term.key(); k; k = term.key()) {
                if (k == 'b' || k == 'B' || k == ' ') engine->set_bypass(!engine->bypass());
                if (k == 'q' || k == 'Q') g_stop = 1;
            }
            if (duration > 0 && elapsed >= duration) break;
            if (source && source->eof().load() && ctx->after_eof.load() >= engine->latency() + 2 * block) {
                done_file = true;  // the file's last sample has left the model
                break;
            }

            // watchdog: a stream that stopped, or whose callback no longer comes, has lost its device
            const std::uint64_t cb = ctx->callbacks.load();
            if (cb != last_cb) last_cb = cb, t_last_cb = now;
            const bool inactive = Pa_IsStreamActive(op.stream) != 1;
            const bool stalled = std::chrono::duration<double>(now - t_last_cb).count() > stall_s;
            if (inactive || stalled) {
                ++lost_events;
                const std::string why = inactive ? std::string("the stream stopped")
                                                 : "no callback for " + std::to_string(static_cast<int>(stall_s * 1000)) + " ms";
                std::fprintf(stderr, "%sssm-denoise: audio device lost (%s); reopening every 1 s, Ctrl-C to quit\n",
                             tty ? "\r\x1b[K" : "", why.c_str());
                if (is_jack(dv.out) && file_path.empty()) {
                    // PortAudio's JACK host API (19.6) cannot stop a stream whose server is gone (it waits 10
                    // minutes for a process cycle that never comes), so it cannot be torn down and reopened in this
                    // process. Close the recordings cleanly and start afresh as a new process that waits for the
                    // server and appends to them; the PortAudio state that cannot be stopped goes with this one.
                    term.leave();
                    if (recorder) recorder->stop();
                    std::vector<std::string> args;
                    for (int a = 0; a < argc; ++a) {
                        const std::string s = argv[a];
                        if (s == "--resume-lost" || s == "--resume-frames" || s == "--resume-since" || s == "--block" ||
                            s == "-b" || s == "--rate" || s == "-r") {
                            ++a;  // each takes one value
                            continue;
                        }
                        args.push_back(s);
                    }
                    const double now_s =
                        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
                    for (const std::string& s :
                         {std::string("--block"), std::to_string(block), std::string("--rate"), std::to_string(rate),
                          std::string("--resume-lost"), std::to_string(resume_lost + 1), std::string("--resume-frames"),
                          std::to_string(resume_frames + engine->frames()), std::string("--resume-since"),
                          std::to_string(now_s)})
                        args.push_back(s);
                    std::vector<char*> av;
                    for (auto& s : args) av.push_back(s.data());
                    av.push_back(nullptr);
                    std::fflush(nullptr);
                    ::execv("/proc/self/exe", av.data());
                    throw Fatal{std::string("cannot restart to reopen the device: ") + std::strerror(errno)};
                }
                pa_down();
                const auto t_lost = Clock::now();
                while (!g_stop) {
                    std::this_thread::sleep_for(std::chrono::seconds(1));
                    if (pa_init() != paNoError) continue;
                    try {
                        Devices nd;
                        const PaHostApiIndex h = find_host_api(host_spec);
                        nd.out = find_device(out_spec, false, h);
                        if (file_path.empty()) nd.in = find_device(in_spec, true, h);
                        if (open_stream(nd, rate, block, *ctx, op) == paNoError && Pa_StartStream(op.stream) == paNoError) {
                            dv = nd;
                            ++reopens;
                            std::fprintf(stderr, "ssm-denoise: reopened %s after %.1f s\n",
                                         Pa_GetDeviceInfo(nd.out)->name,
                                         std::chrono::duration<double>(Clock::now() - t_lost).count());
                            break;
                        }
                    } catch (const Fatal&) {
                    }
                    pa_down();
                }
                if (g_stop) break;
                last_cb = ctx->callbacks.load();
                t_last_cb = Clock::now();
                continue;
            }

            if (now >= t_status) {
                t_status = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(status_every));
                double lm = 0, lx = 0;
                engine->take_load(lm, lx);
                if (lm > 0) tot.load_sum += lm, ++tot.load_n;
                tot.load_max = std::max(tot.load_max, lx);
                const double dev = ctx->device_latency.load();
                const PaStreamInfo* si = Pa_GetStreamInfo(op.stream);
                device_latency_s = dev >= 0 ? dev : (si ? si->inputLatency + si->outputLatency : 0.0);
                const double internal_ms = 1e3 * static_cast<double>(engine->latency()) / rate;
                if (!quiet) {
                    char line[512];
                    std::snprintf(line, sizeof line,
                                  "in %s  out %s dBFS | model %4.1f%% (max %4.1f%%) | xruns %llu | latency %.2f ms "
                                  "(device %.2f + resample %.2f + model %.2f) | %s%s",
                                  meter(engine->take_peak_in()).c_str(), meter(engine->take_peak_out()).c_str(),
                                  lm * 100, lx * 100,
                                  static_cast<unsigned long long>(ctx->xruns.load() + ctx->file_underruns.load() +
                                                                  engine->fifo_underruns()),
                                  device_latency_s * 1e3 + internal_ms, device_latency_s * 1e3,
                                  1e3 * static_cast<double>(engine->resampler_latency()) / rate,
                                  1e3 * static_cast<double>(engine->model_latency()) / rate,
                                  engine->suspended() ? "MODEL TOO SLOW: bypassed" : engine->bypass() ? "BYPASS" : "denoising",
                                  recorder ? " | rec" : "");
                    if (tty) std::fprintf(stderr, "\r%s\x1b[K", line);
                    else std::fprintf(stderr, "%s\n", line);
                }
            }
        }
        if (tty && !quiet) std::fprintf(stderr, "\n");
        term.leave();

        // ---- the way out: let the output drain, close files, report ----
        if (op.stream) {
            Pa_StopStream(op.stream);
            Pa_CloseStream(op.stream);
            op.stream = nullptr;
        }
        if (source) source->stop();
        if (recorder) recorder->stop();
        double lm = 0, lx = 0;
        engine->take_load(lm, lx);
        if (lm > 0) tot.load_sum += lm, ++tot.load_n;
        tot.load_max = std::max(tot.load_max, lx);

        stats = {{"model", model_path},
                 {"host_api", api_name},
                 {"input", in_name},
                 {"output", out_name},
                 {"device_rate", rate},
                 {"model_rate", mrate},
                 {"block", block},
                 {"frames", resume_frames + engine->frames()},  // over every run of a resumed session
                 {"seconds", static_cast<double>(resume_frames + engine->frames()) / rate},
                 {"callbacks", ctx->callbacks.load()},
                 {"host_period_frames", ctx->host_frames.load()},
                 {"xruns", ctx->xruns.load()},
                 {"file_underruns", ctx->file_underruns.load()},
                 {"resampler_underruns", engine->fifo_underruns()},
                 {"overloaded_blocks", engine->overloaded_blocks()},
                 {"model_suspensions", engine->suspensions()},
                 {"record_dropped_frames", engine->record_dropped()},
                 {"recorded_in_frames", recorder ? resume_frames + recorder->frames_in() : 0},
                 {"recorded_out_frames", recorder ? resume_frames + recorder->frames_out() : 0},
                 {"file_frames_played", ctx->file_frames.load()},
                 {"file_finished", done_file},
                 {"device_lost", lost_events + static_cast<std::uint64_t>(resume_lost)},
                 {"reopened", reopens + static_cast<std::uint64_t>(resume_lost)},
                 {"latency_frames", {{"resampler", engine->resampler_latency()},
                                     {"model", engine->model_latency()},
                                     {"internal", engine->latency()}}},
                 {"device_latency_s", device_latency_s},
                 {"model_load_mean", tot.load_n ? tot.load_sum / static_cast<double>(tot.load_n) : 0.0},
                 {"model_load_max", tot.load_max},
                 {"interrupted", g_stop != 0}};
        if (!quiet) {
            std::fprintf(stderr, "ssm-denoise: %.1f s, %llu xruns, model load mean %.1f%% max %.1f%%",
                         stats["seconds"].get<double>(), static_cast<unsigned long long>(ctx->xruns.load()),
                         100 * stats["model_load_mean"].get<double>(), 100 * tot.load_max);
            if (recorder)
                std::fprintf(stderr, ", recorded %llu + %llu frames to %s, %s",
                             static_cast<unsigned long long>(resume_frames + recorder->frames_in()),
                             static_cast<unsigned long long>(resume_frames + recorder->frames_out()), record[0].c_str(),
                             record[1].c_str());
            std::fprintf(stderr, "\n");
        }
        if (engine->record_dropped())
            std::fprintf(stderr, "ssm-denoise: warning: the disk fell behind; %llu frames could not be recorded\n",
                         static_cast<unsigned long long>(engine->record_dropped()));
    } catch (const Fatal& f) {
        std::fprintf(stderr, "ssm-denoise: %s\n", f.what.c_str());
        rc = 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ssm-denoise: %s\n", e.what());
        rc = 1;
    }
    term.leave();
    if (op.stream) {  // an error path: stop the callback before the engine and the files go away
        Pa_AbortStream(op.stream);
        Pa_CloseStream(op.stream);
        op.stream = nullptr;
    }
    try {
        if (source) source->stop();
        if (recorder) recorder->stop();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ssm-denoise: %s\n", e.what());
        rc = 1;
    }
    pa_down();
    if (!stats_path.empty() && !stats.is_null()) {
        std::ofstream js(stats_path);
        js << stats.dump(2) << "\n";
        if (!js) {
            std::fprintf(stderr, "ssm-denoise: cannot write %s\n", stats_path.c_str());
            rc = 1;
        }
    }
    return rc;
}
