#include "wfdb.hpp"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>

#include "ssmstream/error.hpp"

namespace ssm::monitor {
namespace {

struct SignalSpec {
    std::string file;
    int format = 0;
    double gain = 200, baseline = 0;
    std::string units = "mV", desc;
};

[[noreturn]] void fail(const std::filesystem::path& p, const std::string& why) {
    throw ssm::UsageError(p.string() + ": " + why);
}

std::vector<std::string> split_ws(const std::string& s) {
    std::istringstream is(s);
    std::vector<std::string> t;
    for (std::string w; is >> w;) t.push_back(w);
    return t;
}

double to_num(const std::filesystem::path& p, const std::string& s, const char* what) {
    try {
        std::size_t used = 0;
        const double v = std::stod(s, &used);
        if (used == 0 || !std::isfinite(v)) throw std::invalid_argument(s);
        return v;
    } catch (const std::exception&) {
        fail(p, std::string("bad ") + what + " '" + s + "' in header");
    }
}

}  // namespace

WfdbRecord read_wfdb(const std::filesystem::path& in, std::size_t max_frames) {
    std::filesystem::path hea = in;
    if (hea.extension() != ".hea") hea += ".hea";
    std::ifstream f(hea);
    if (!f) fail(hea, "cannot open WFDB header");
    std::vector<std::string> lines;
    for (std::string l; std::getline(f, l);) {
        if (!l.empty() && l.back() == '\r') l.pop_back();
        const auto first = l.find_first_not_of(" \t");
        if (first == std::string::npos || l[first] == '#') continue;
        lines.push_back(l);
    }
    if (lines.empty()) fail(hea, "empty WFDB header");
    const auto rec = split_ws(lines[0]);
    if (rec.size() < 2) fail(hea, "record line needs a name and a signal count");
    if (rec[0].find('/') != std::string::npos) fail(hea, "multi-segment records are not supported");
    WfdbRecord r;
    r.name = rec[0];
    const double nsig = to_num(hea, rec[1], "signal count");
    if (nsig < 1 || nsig > 256 || nsig != std::floor(nsig)) fail(hea, "signal count not in 1..256");
    r.channels = static_cast<std::size_t>(nsig);
    r.sample_rate = 250;  // WFDB's default
    if (rec.size() > 2) r.sample_rate = to_num(hea, rec[2].substr(0, rec[2].find_first_of("/(")), "sampling frequency");
    if (r.sample_rate <= 0 || r.sample_rate > 100000) fail(hea, "sampling frequency out of range");
    std::size_t nsamp = 0;
    if (rec.size() > 3) nsamp = static_cast<std::size_t>(to_num(hea, rec[3], "sample count"));
    if (lines.size() < 1 + r.channels) fail(hea, "header has fewer signal lines than its signal count");

    std::vector<SignalSpec> sig(r.channels);
    for (std::size_t c = 0; c < r.channels; ++c) {
        const auto t = split_ws(lines[1 + c]);
        if (t.size() < 2) fail(hea, "signal line " + std::to_string(c + 1) + " needs a file name and a format");
        SignalSpec& s = sig[c];
        s.file = t[0];
        const std::string fmt = t[1].substr(0, t[1].find_first_of("x:+"));
        s.format = static_cast<int>(to_num(hea, fmt, "format"));
        if (t[1].find_first_of("x:+") != std::string::npos) fail(hea, "format modifiers (x, :, +) are not supported");
        double adczero = 0;
        if (t.size() > 4) adczero = to_num(hea, t[4], "ADC zero");
        s.baseline = adczero;
        if (t.size() > 2) {
            std::string g = t[2];
            if (const auto slash = g.find('/'); slash != std::string::npos) {
                s.units = g.substr(slash + 1);
                g = g.substr(0, slash);
            }
            if (const auto lp = g.find('('); lp != std::string::npos) {
                const auto rp = g.find(')', lp);
                if (rp == std::string::npos) fail(hea, "unclosed baseline '(' on signal line " + std::to_string(c + 1));
                s.baseline = to_num(hea, g.substr(lp + 1, rp - lp - 1), "baseline");
                g = g.substr(0, lp);
            }
            s.gain = to_num(hea, g, "ADC gain");
            if (s.gain == 0) s.gain = 200;
        }
        if (t.size() > 8) {
            std::string d;
            for (std::size_t i = 8; i < t.size(); ++i) d += (i > 8 ? " " : "") + t[i];
            s.desc = d;
        }
        if (s.file != sig[0].file || s.format != sig[0].format)
            fail(hea, "signals in several files or formats are not supported");
        r.names.push_back(s.desc.empty() ? "ch" + std::to_string(c) : s.desc);
        r.units.push_back(s.units);
    }
    const int fmt = sig[0].format;
    if (fmt != 212 && fmt != 16 && fmt != 80) fail(hea, "WFDB format " + std::to_string(fmt) + " not supported (212, 16, 80)");

    const auto dat = hea.parent_path() / sig[0].file;
    std::ifstream d(dat, std::ios::binary);
    if (!d) fail(dat, "cannot open WFDB signal file");
    std::vector<unsigned char> raw((std::istreambuf_iterator<char>(d)), std::istreambuf_iterator<char>());
    const std::size_t nch = r.channels;
    std::size_t total = 0;  // samples (all channels) available in the file
    if (fmt == 212) total = raw.size() / 3 * 2 + (raw.size() % 3 >= 2 ? 1 : 0);
    else if (fmt == 16) total = raw.size() / 2;
    else total = raw.size();
    std::size_t frames = total / nch;
    if (nsamp != 0 && nsamp < frames) frames = nsamp;
    if (max_frames != 0 && max_frames < frames) frames = max_frames;
    if (frames == 0) fail(dat, "signal file holds no complete frame");
    r.frames = frames;
    r.samples.resize(frames * nch);
    for (std::size_t i = 0; i < frames * nch; ++i) {
        int v = 0;
        if (fmt == 212) {
            const std::size_t b = (i / 2) * 3;
            if (i % 2 == 0) v = raw[b] | ((raw[b + 1] & 0x0F) << 8);
            else v = raw[b + 2] | ((raw[b + 1] & 0xF0) << 4);
            if (v & 0x800) v -= 0x1000;
        } else if (fmt == 16) {
            v = static_cast<std::int16_t>(raw[2 * i] | (raw[2 * i + 1] << 8));
        } else {
            v = static_cast<int>(raw[i]) - 128;
        }
        const SignalSpec& s = sig[i % nch];
        const int invalid = fmt == 212 ? -2048 : fmt == 16 ? -32768 : -128;  // WFDB's "no sample here"
        r.samples[i] = v == invalid ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>((v - s.baseline) / s.gain);
    }
    return r;
}

}  // namespace ssm::monitor
