// `ssm hippo MEASURE… IN COEFFS [--reconstruct OUT]`: streams IN through a HiPPO operator (one per file channel),
// writes the N coefficients of every channel per frame (frames × channels·N, channel-major: c·N + n) and, with
// --reconstruct, the signal rebuilt from them at a fixed look-back: y_c(t) = Σ_n φ_n(delay·dt) x_{c,n}(t), an estimate
// of u_c(t − delay) (delay 0: the operator's smoothed view of the present sample).
#include "hippo.hpp"

#include <cmath>
#include <cstdio>

#include "signal_io.hpp"
#include "ssmstream/hippo.hpp"
#include "ssmstream/ssmstream.hpp"

namespace ssm::app {

CLI::App* add_hippo_command(CLI::App& app, HippoOptions& o) {
    auto* c = app.add_subcommand("hippo", "Online HiPPO coefficients of a signal (LegS, LegT, LagT, FouT) and their reconstruction");
    c->add_option("IN", o.input, "input signal (WAV/FLAC/OGG, .npy frames x channels, or CSV)")->required();
    c->add_option("COEFFS", o.output, "coefficients to write (.npy or .csv): frames x (channels*order)")->required();
    c->add_option("--measure", o.measure, "legs (exponential memory), legt (sliding window of 2/dt samples), lagt, fout")
        ->check(CLI::IsMember({"legs", "legt", "lagt", "fout"}));
    c->add_option("--order", o.order, "N, coefficients per channel (default 32; even for fout)")->check(CLI::Range(1, 1024));
    c->add_option("--dt", o.dt, "continuous time per sample (default 0.01: a LegT window of 200 samples)");
    c->add_option("--disc", o.disc, "discretisation: bilinear (default), zoh, forward, backward")
        ->check(CLI::IsMember({"bilinear", "zoh", "forward", "backward"}));
    c->add_option("--reconstruct", o.reconstruct, "also write the signal rebuilt from the coefficients (same format rules as ssm run)");
    c->add_option("--delay", o.delay, "look-back of the reconstruction, in samples (default 0)")->check(CLI::NonNegativeNumber);
    c->add_option("--block", o.block, "frames per processing block")->check(CLI::Range(1, 1 << 20));
    c->add_flag("--quiet", o.quiet, "no summary on stderr");
    return c;
}

int cmd_hippo(const HippoOptions& o) {
    auto reader = open_reader(o.input);
    const SignalInfo info = reader->info();
    const std::size_t C = info.channels, N = o.order;
    if (C == 0) throw UsageError(o.input + ": no channels");
    hippo::Spec spec;
    spec.measure = o.measure;
    spec.order = N;
    spec.dt = o.dt;
    spec.discretization = o.disc;
    spec.channels = C;
    spec.sample_rate = info.sample_rate;
    const auto model = hippo::make_model(spec);  // validates measure/order/dt (UsageError)
    const auto phi = hippo::basis(o.measure, N, {o.delay * o.dt});
    if (!o.reconstruct.empty() && o.delay * o.dt > hippo::window(o.measure))
        std::fprintf(stderr, "ssm hippo: note: --delay %.0f samples is past the %s window (%.0f samples): the reconstruction is 0\n",
                     o.delay, o.measure.c_str(), hippo::window(o.measure) / o.dt);

    std::vector<std::string> names;
    for (std::size_t c = 0; c < C; ++c)
        for (std::size_t n = 0; n < N; ++n) names.push_back("c" + std::to_string(c) + "_" + std::to_string(n));
    SignalInfo none;
    auto coeffs = open_writer(o.output, C * N, info.sample_rate, info.frames, none, names);
    std::unique_ptr<SignalWriter> recon;
    if (!o.reconstruct.empty()) recon = open_writer(o.reconstruct, C, info.sample_rate, info.frames, info, info.names);

    Stream stream(model);
    stream.prepare({.sample_rate = info.sample_rate, .max_block = o.block, .channels = C});
    std::vector<float> in(o.block * C), out(o.block * C * N), rec(o.block * C);
    std::size_t frames = 0;
    for (;;) {
        const std::size_t got = reader->read(in.data(), o.block);
        if (got == 0) break;
        for (std::size_t i = 0; i < got * C; ++i)
            if (!std::isfinite(in[i]))
                throw UsageError(o.input + ": non-finite sample at frame " + std::to_string(frames + i / C) + ", channel " +
                                 std::to_string(i % C) + " (nothing written)");
        stream.process(in.data(), out.data(), got);
        coeffs->write(out.data(), got);
        if (recon) {
            for (std::size_t t = 0; t < got; ++t)
                for (std::size_t c = 0; c < C; ++c) {
                    double y = 0;
                    const float* x = out.data() + (t * C + c) * N;
                    for (std::size_t n = 0; n < N; ++n) y += phi[n] * x[n];
                    rec[t * C + c] = static_cast<float>(y);
                }
            recon->write(rec.data(), got);
        }
        frames += got;
    }
    if (frames == 0) throw UsageError(o.input + ": no samples (zero-length input)");
    coeffs->commit();
    if (recon) recon->commit();
    if (!o.quiet)
        std::fprintf(stderr, "ssm hippo: %s N=%zu dt=%g (%s), %zu frames x %zu channels -> %s (%zu columns)%s%s\n",
                     o.measure.c_str(), N, o.dt, o.disc.c_str(), frames, C, o.output.c_str(), C * N,
                     recon ? ", reconstruction -> " : "", recon ? o.reconstruct.c_str() : "");
    return 0;
}

}  // namespace ssm::app
