// `ssm design`: a classic filter (ssmstream/filters.hpp) written as a native model file, alone or chained with an
// existing model; and `ssm run --zero-phase`. Every parameter is checked here or in ssm::validate, and a parameter
// that does not apply to the family is an error rather than silently ignored.
#include "design.hpp"

#include <cmath>
#include <cstdio>

#include "signal_io.hpp"
#include "ssmstream/ssmstream.hpp"

namespace ssm::app {

namespace fs = std::filesystem;

namespace {

std::pair<double, double> parse_band(const std::string& s) {
    const auto comma = s.find(',');
    auto number = [&](const std::string& part) {
        std::size_t used = 0;
        double v = 0;
        try {
            v = std::stod(part, &used);
        } catch (const std::exception&) {
            used = 0;
        }
        if (used == 0 || used != part.size()) throw UsageError("--band '" + s + "': expected two frequencies in Hz, LOW,HIGH");
        return v;
    };
    if (comma == std::string::npos) throw UsageError("--band '" + s + "': expected two frequencies in Hz, LOW,HIGH");
    return {number(s.substr(0, comma)), number(s.substr(comma + 1))};
}

bool given(const CLI::App* cmd, const char* name) { return cmd->count(name) > 0; }

}  // namespace

CLI::App* add_design_command(CLI::App& app, DesignOptions& o) {
    auto* d = app.add_subcommand("design", "Write a classic filter (second-order sections) as a native model file");
    o.command = d;
    d->add_option("FAMILY", o.family, "butter, cheby1, cheby2, ellip, bessel, notch, comb or dcblock")->required();
    d->add_option("--order", o.order, "filter order 1..32 (band-pass/band-stop: 2·order poles, as scipy)");
    d->add_option("--type", o.type, "lowpass, highpass, bandpass or bandstop (default: lowpass with --cutoff, bandpass with --band)");
    d->add_option("--cutoff", o.cutoff, "edge frequency in Hz (low-pass, high-pass, dcblock)");
    d->add_option("--band", o.band, "LOW,HIGH band edges in Hz (band-pass, band-stop)");
    d->add_option("--rate", o.rate, "sample rate in Hz")->required();
    d->add_option("--ripple", o.ripple, "passband ripple in dB (cheby1, ellip)");
    d->add_option("--attenuation", o.attenuation, "stopband attenuation in dB (cheby2, ellip)");
    d->add_option("--freq", o.freq, "notch/comb: the frequency to remove, in Hz");
    d->add_option("--q", o.q, "notch/comb: quality factor = freq / -3 dB width (each harmonic gets the same Q)");
    d->add_option("--harmonics", o.harmonics, "notch/comb: notches at freq·1 .. freq·N (comb default: all below Nyquist)");
    d->add_option("--channels", o.channels, "channels filtered independently by the same cascade (default 1)");
    d->add_option("--name", o.name, "the layer's name (its tensor is NAME.sos)");
    d->add_option("--then", o.then, "append an existing native model: the filter runs first, then its layers");
    d->add_option("--first", o.first, "prepend an existing native model: its layers run first, then the filter");
    d->add_option("-o,--output", o.output, "model file to write (.safetensors)")->required();
    return d;
}

int cmd_design(const DesignOptions& o) {
    const auto* cmd = o.command;
    FilterSpec s;
    s.family = filter_family_from_string(o.family);
    s.sample_rate = o.rate;
    const bool iir = s.family != FilterFamily::notch && s.family != FilterFamily::dc_blocker;
    auto refuse = [&](const char* opt, const std::string& why) {
        if (given(cmd, opt)) throw UsageError(std::string(opt) + " " + why);
    };
    const std::string fam(o.family);
    if (!iir) {
        refuse("--order", "does not apply to " + fam);
        refuse("--type", "does not apply to " + fam);
        refuse("--band", "does not apply to " + fam);
    }
    if (s.family != FilterFamily::chebyshev1 && s.family != FilterFamily::elliptic) refuse("--ripple", "applies to cheby1 and ellip only");
    if (s.family != FilterFamily::chebyshev2 && s.family != FilterFamily::elliptic) refuse("--attenuation", "applies to cheby2 and ellip only");
    if (s.family != FilterFamily::notch) {
        refuse("--freq", "applies to notch and comb only");
        refuse("--q", "applies to notch and comb only");
        refuse("--harmonics", "applies to notch and comb only");
    }
    if (given(cmd, "--then") && given(cmd, "--first")) throw UsageError("--then and --first exclude each other");
    if ((given(cmd, "--then") || given(cmd, "--first")) && given(cmd, "--channels"))
        throw UsageError("--channels comes from the model given to --then/--first");
    if (o.channels == 0 || o.channels > 4096) throw UsageError("--channels must be in 1..4096");
    if (o.name.empty() || o.name.find('.') != std::string::npos) throw UsageError("--name must be non-empty and without '.'");

    if (iir) {
        if (!given(cmd, "--order")) throw UsageError(fam + " needs --order N (1..32)");
        s.order = o.order;
        if (given(cmd, "--cutoff") && given(cmd, "--band")) throw UsageError("give --cutoff (low/high-pass) or --band (band-pass/stop), not both");
        if (given(cmd, "--type")) s.type = filter_type_from_string(o.type);
        else if (given(cmd, "--band")) s.type = FilterType::bandpass;
        else if (given(cmd, "--cutoff")) s.type = FilterType::lowpass;
        else throw UsageError(fam + " needs --cutoff F (low-pass/high-pass) or --band LOW,HIGH (band-pass/band-stop)");
        const bool band = s.type == FilterType::bandpass || s.type == FilterType::bandstop;
        if (band && !given(cmd, "--band")) throw UsageError("--type " + std::string(to_string(s.type)) + " needs --band LOW,HIGH");
        if (!band && !given(cmd, "--cutoff")) throw UsageError("--type " + std::string(to_string(s.type)) + " needs --cutoff F");
        if (band) std::tie(s.low, s.high) = parse_band(o.band);
        else s.cutoff = o.cutoff;
        if ((s.family == FilterFamily::chebyshev1 || s.family == FilterFamily::elliptic) && !given(cmd, "--ripple"))
            throw UsageError(fam + " needs --ripple DB (passband ripple)");
        if ((s.family == FilterFamily::chebyshev2 || s.family == FilterFamily::elliptic) && !given(cmd, "--attenuation"))
            throw UsageError(fam + " needs --attenuation DB (stopband attenuation)");
        s.ripple_db = o.ripple;
        s.attenuation_db = o.attenuation;
    } else if (s.family == FilterFamily::notch) {
        if (!given(cmd, "--freq")) throw UsageError(fam + " needs --freq F (the frequency to remove)");
        if (!given(cmd, "--q")) throw UsageError(fam + " needs --q Q (e.g. 30: a -3 dB width of freq/30)");
        refuse("--cutoff", "does not apply to " + fam);
        s.notch_hz = o.freq;
        s.q = o.q;
        if (given(cmd, "--harmonics")) s.harmonics = o.harmonics;
        else if (o.family == "comb" && o.freq > 0 && o.rate > 0)
            s.harmonics = std::clamp(static_cast<int>(std::ceil(o.rate / 2 / o.freq)) - 1, 1, 64);  // all below Nyquist
    } else {
        if (!given(cmd, "--cutoff")) throw UsageError("dcblock needs --cutoff F (its -3 dB point in Hz)");
        s.cutoff = o.cutoff;
    }
    validate(s);

    std::vector<std::byte> bytes;
    std::string chained;
    if (given(cmd, "--then") || given(cmd, "--first")) {
        const fs::path other = given(cmd, "--then") ? o.then : o.first;
        if (fs::is_directory(other)) throw UsageError(other.string() + ": --then/--first take a native model file (convert a checkpoint first)");
        const auto file = TensorFile::open(other);
        bytes = chain_filter_bytes(s, file, given(cmd, "--then") ? FilterPlacement::before : FilterPlacement::after);
        chained = given(cmd, "--then") ? ", then " + other.string() : ", after " + other.string();
    } else {
        bytes = filter_model_bytes(s, o.channels, o.name);
    }
    const auto model = Model::from_tensor_file(TensorFile::from_bytes(bytes, o.output));  // re-read: what we write loads
    write_file_atomically(o.output, bytes);
    const auto& lines = model->info().layers;  // the filter's own line: first, or last after --first
    std::fprintf(stderr, "ssm: %s%s -> %s\n", (given(cmd, "--first") ? lines.back() : lines.front()).c_str(), chained.c_str(),
                 o.output.c_str());
    return 0;
}

int run_zero_phase(const fs::path& model_path, const fs::path& in_path, const fs::path& out_path, const ZeroPhaseOptions& o) {
    const auto model = load_model(model_path);
    const auto& mi = model->info();
    if (!is_lti_filter(*model))
        throw UsageError("--zero-phase needs a model made only of sos layers (a designed filter); model '" + mi.name +
                         "' has other layers");
    const Sos sos = model_sections(*model);
    if (fs::exists(out_path) && fs::equivalent(in_path, out_path)) throw UsageError("output would overwrite the input");
    auto reader = open_reader(in_path);
    const auto info = reader->info();
    double rate = info.sample_rate;
    if (o.rate > 0) {
        if (rate > 0 && std::abs(rate - o.rate) > 1e-6)
            throw UsageError("--rate " + std::to_string(o.rate) + " contradicts the file's own rate " + std::to_string(rate));
        rate = o.rate;
    }
    if (rate <= 0) rate = mi.sample_rate;
    if (mi.sample_rate > 0 && std::abs(rate - mi.sample_rate) > 1e-6)
        throw UsageError(in_path.string() + " is at " + std::to_string(static_cast<long>(rate)) + " Hz but the filter was designed at " +
                         std::to_string(static_cast<long>(mi.sample_rate)) + " Hz; --zero-phase does not resample (design it at the file's rate)");
    const std::size_t C = info.channels;
    if (C != mi.in_channels && mi.in_channels != 1)
        throw UsageError(in_path.string() + ": " + std::to_string(C) + " channel(s), but model '" + mi.name + "' takes " +
                         std::to_string(mi.in_channels) + " (or 1, run per channel)");
    std::vector<float> all, buf(std::size_t{1} << 15);
    std::uint64_t nonfinite = 0;
    for (;;) {  // zero-phase filtering needs the whole signal: read it all
        const std::size_t n = reader->read(buf.data(), buf.size() / C);
        if (n == 0) break;
        for (std::size_t i = 0; i < n * C; ++i) {
            if (!std::isfinite(buf[i])) {
                if (o.nonfinite == "error")
                    throw Error(in_path.string() + ": non-finite sample (" + (std::isnan(buf[i]) ? "NaN" : "Inf") + ") at frame " +
                                std::to_string(all.size() / C + i / C) + ", channel " + std::to_string(i % C) +
                                "; clean the input or pass --nonfinite zero");
                buf[i] = 0.0f;
                ++nonfinite;
            }
        }
        all.insert(all.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n * C));
    }
    const std::size_t frames = all.size() / C;
    if (frames == 0) throw Error(in_path.string() + ": zero-length input, nothing to process");
    std::vector<double> x(frames);
    std::vector<float> out(all.size());
    for (std::size_t c = 0; c < C; ++c) {
        for (std::size_t t = 0; t < frames; ++t) x[t] = all[t * C + c];
        const auto y = sosfiltfilt(sos, x);  // throws for a signal within the edge padding
        for (std::size_t t = 0; t < frames; ++t) out[t * C + c] = static_cast<float>(y[t]);
    }
    auto writer = open_writer(out_path, C, rate, static_cast<std::int64_t>(frames), info, info.names);
    writer->write(out.data(), frames);
    writer->commit();
    if (!o.quiet) {
        if (nonfinite) std::fprintf(stderr, "ssm: %llu non-finite input samples replaced by 0\n", static_cast<unsigned long long>(nonfinite));
        std::fprintf(stderr, "ssm: %zu frames, zero-phase (forward-backward, %zu sections) -> %s\n", frames, sos.size(), out_path.c_str());
    }
    return 0;
}

}  // namespace ssm::app
