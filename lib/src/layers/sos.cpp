// `sos` — an LTI filter as a cascade of second-order sections (scipy's `sos` layout), the same cascade on each of
// `channels` channels. Per section, transposed direct form II in float64 (float32 only at the layer's edges):
//   y = b0·x + s1;  s1 = b1·x − a1·y + s2;  s2 = b2·x − a2·y.
// The float64 state lives in the engine's float state buffer, each double as three floats holding 22 + 22 + 20 of
// its bits as small integers: exact both ways, always finite (a saved state passes the engine's NaN/Inf check, and
// zero floats decode to 0.0), so every block size gives the same bits as stepping sample by sample.
#include "layers/sos.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

constexpr std::size_t kFloatsPerDouble = 3;
constexpr std::size_t kMaxSections = 256;  // the block loop keeps one channel's states on the stack

inline void encode(double v, float* f) noexcept {
    const auto b = std::bit_cast<std::uint64_t>(v);
    f[0] = static_cast<float>(b & 0x3FFFFFu);
    f[1] = static_cast<float>((b >> 22) & 0x3FFFFFu);
    f[2] = static_cast<float>(b >> 44);
}

inline std::uint64_t field(float f, float max) noexcept {
    return static_cast<std::uint64_t>(f > 0 ? (f < max ? f : max) : 0.0f);  // clamped: a foreign state cannot overflow
}

inline double decode(const float* f) noexcept {
    const std::uint64_t b = field(f[0], 4194303.0f) | field(f[1], 4194303.0f) << 22 | field(f[2], 1048575.0f) << 44;
    const double v = std::bit_cast<double>(b);
    return std::isfinite(v) ? v : 0.0;
}

std::string fmt(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return b;
}

class SosLayer final : public Layer {
public:
    SosLayer(std::string name, std::size_t channels, std::vector<std::array<double, 6>> sections, std::string design)
        : name_(std::move(name)), channels_(channels), sections_(std::move(sections)), design_(std::move(design)) {}

    std::size_t in_width() const noexcept override { return channels_; }
    std::size_t out_width() const noexcept override { return channels_; }
    std::size_t state_size() const noexcept override { return channels_ * sections_.size() * 2 * kFloatsPerDouble; }
    std::size_t param_count() const noexcept override { return sections_.size() * 6; }
    std::string describe() const override {
        return "sos '" + name_ + "' " + std::to_string(channels_) + " ch, " + std::to_string(sections_.size()) +
               " section" + (sections_.size() == 1 ? "" : "s") + (design_.empty() ? "" : ": " + design_);
    }
    const std::vector<std::array<double, 6>>& sections() const noexcept { return sections_; }

    void step(const float* in, float* out, std::size_t frames, float* state, float*) const noexcept override {
        const std::size_t S = sections_.size(), C = channels_;
        double s1[kMaxSections], s2[kMaxSections];
        for (std::size_t c = 0; c < C; ++c) {
            float* st = state + c * S * 2 * kFloatsPerDouble;
            for (std::size_t k = 0; k < S; ++k) {
                s1[k] = decode(st + (2 * k) * kFloatsPerDouble);
                s2[k] = decode(st + (2 * k + 1) * kFloatsPerDouble);
            }
            for (std::size_t t = 0; t < frames; ++t) {
                double x = in[t * C + c];
                for (std::size_t k = 0; k < S; ++k) {
                    const auto& q = sections_[k];
                    const double y = q[0] * x + s1[k];
                    s1[k] = q[1] * x - q[4] * y + s2[k];
                    s2[k] = q[2] * x - q[5] * y;
                    x = y;
                }
                out[t * C + c] = static_cast<float>(x);
            }
            for (std::size_t k = 0; k < S; ++k) {
                encode(s1[k], st + (2 * k) * kFloatsPerDouble);
                encode(s2[k], st + (2 * k + 1) * kFloatsPerDouble);
            }
        }
    }

private:
    std::string name_;
    std::size_t channels_;
    std::vector<std::array<double, 6>> sections_;
    std::string design_;
};

// "butter bandpass, order 4, 0.5–40 Hz at 250 Hz": the design object as written by ssm::filter_model_bytes, read
// only for display (the sections alone define the maths).
std::string design_summary(const nlohmann::json& d) {
    if (!d.is_object()) return {};
    std::string s;
    auto str = [&](const char* k) { return d.contains(k) && d[k].is_string() ? d[k].get<std::string>() : std::string(); };
    auto numv = [&](const char* k) { return d.contains(k) && d[k].is_number() ? fmt(d[k].get<double>()) : std::string(); };
    auto add = [&](const std::string& part) {
        if (!part.empty()) s += (s.empty() ? "" : ", ") + part;
    };
    add(str("family") + (str("type").empty() ? "" : " " + str("type")));
    if (!numv("order").empty()) add("order " + numv("order"));
    if (d.contains("band") && d["band"].is_array() && d["band"].size() == 2 && d["band"][0].is_number() && d["band"][1].is_number())
        add(fmt(d["band"][0].get<double>()) + "-" + fmt(d["band"][1].get<double>()) + " Hz");
    if (!numv("cutoff").empty()) add("cutoff " + numv("cutoff") + " Hz");
    if (!numv("freq").empty()) add(numv("freq") + " Hz");
    if (!numv("q").empty()) add("Q " + numv("q"));
    if (!numv("harmonics").empty() && numv("harmonics") != "1") add(numv("harmonics") + " harmonics");
    if (!numv("ripple_db").empty()) add("ripple " + numv("ripple_db") + " dB");
    if (!numv("attenuation_db").empty()) add("attenuation " + numv("attenuation_db") + " dB");
    if (!numv("sample_rate").empty()) add("at " + numv("sample_rate") + " Hz");
    return s;
}

}  // namespace

const std::vector<std::array<double, 6>>* sos_sections(const Layer& layer) noexcept {
    const auto* s = dynamic_cast<const SosLayer*>(&layer);
    return s ? &s->sections() : nullptr;
}

std::unique_ptr<Layer> make_sos(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"channels", "sections", "design"});
    const auto name = get_string(c, "name", "", true);
    const auto channels = get_size(c, "channels", in_width, true);
    const auto S = get_size(c, "sections");
    if (S > kMaxSections)
        throw ConfigError("layer " + layer_label(c) + ": " + std::to_string(S) + " sections, at most " +
                          std::to_string(kMaxSections) + " per sos layer (split the cascade over several layers)");
    if (c.contains("design") && !c["design"].is_object())
        throw ConfigError("layer " + layer_label(c) + ": field 'design' must be an object (it is only displayed)");
    const std::string tname = name + ".sos";
    const auto v = p.take(tname, {static_cast<std::int64_t>(S), 6});  // shape and NaN/Inf checked there
    std::vector<std::array<double, 6>> sections(S);
    for (std::size_t k = 0; k < S; ++k) {
        const double* r = v.data() + 6 * k;
        auto bad = [&](const std::string& what) {
            throw FormatError(p.label() + ": tensor '" + tname + "': section " + std::to_string(k) + " " + what);
        };
        if (r[3] == 0.0) bad("has a0 = 0 (the layout is b0 b1 b2 a0 a1 a2; a0 must be non-zero)");
        for (std::size_t i = 0; i < 6; ++i) sections[k][i] = r[i] / r[3];
        if (!std::all_of(sections[k].begin(), sections[k].end(), [](double x) { return std::isfinite(x); }))
            bad("overflows when normalised by a0 = " + fmt(r[3]));
        // Stable iff both roots of z² + a1·z + a2 lie inside the unit circle: |a2| < 1 and |a1| < 1 + a2.
        const double a1 = sections[k][4], a2 = sections[k][5];
        if (!(std::abs(a2) < 1.0 && std::abs(a1) < 1.0 + a2)) {
            const double disc = a1 * a1 - 4 * a2;
            const double radius = disc >= 0 ? std::max(std::abs((-a1 + std::sqrt(disc)) / 2), std::abs((-a1 - std::sqrt(disc)) / 2))
                                            : std::sqrt(a2);
            bad("is unstable: a pole at |z| = " + fmt(radius) + " (every pole must lie strictly inside the unit circle)");
        }
    }
    return std::make_unique<SosLayer>(name, channels, std::move(sections), c.contains("design") ? design_summary(c["design"]) : "");
}

}  // namespace ssm::detail
