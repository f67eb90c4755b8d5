// Classic filters (`ssm::design_sos`, the `sos` layer, zero-phase filtering) against scipy.signal, from the golden
// files of tests/golden/filters/ (make_filter_golden.py). What is compared, per case:
//  (a) the design: our SOS against scipy's, coefficient by coefficient (pairing and section order as zpk2sos with
//      pairing='nearest'), and the frequency response H(e^jω) of the whole cascade on a grid of 4000 frequencies
//      (complex difference, so magnitude and phase both count);
//  (b) our stream (float32 in and out, float64 state) against scipy `sosfilt`: max|ours − scipy| ≤ 1e-4 × RMS(scipy);
//  (c) our zero-phase `ssm::filtfilt` against scipy `sosfiltfilt`, same tolerance.
// The float64 figures (ssm::sosfilt / ssm::sosfiltfilt on doubles) are printed beside the float32 ones; the table
// in README.md ("Classic filters") is this test's output.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "support.hpp"

using namespace ssm;
using namespace ssm::test;
namespace fs = std::filesystem;

namespace {

const fs::path golden_dir = fs::path(SSM_SOURCE_DIR) / "tests" / "golden" / "filters";

FilterSpec spec_from_json(const nlohmann::json& j) {
    FilterSpec s;
    s.family = filter_family_from_string(j.at("family").get<std::string>());
    if (j.contains("type")) s.type = filter_type_from_string(j["type"].get<std::string>());
    s.order = j.value("order", 4);
    s.sample_rate = j.at("sample_rate").get<double>();
    s.cutoff = j.value("cutoff", 0.0);
    if (j.contains("band")) s.low = j["band"][0].get<double>(), s.high = j["band"][1].get<double>();
    s.ripple_db = j.value("ripple_db", 0.0);
    s.attenuation_db = j.value("attenuation_db", 0.0);
    s.notch_hz = j.value("freq", 0.0);
    s.q = j.value("q", 0.0);
    s.harmonics = j.value("harmonics", 1);
    return s;
}

Sos sos_from_tensor(const TensorView& t) {
    const auto v = TensorFile::to_double(t);
    Sos s(static_cast<std::size_t>(t.shape[0]));
    for (std::size_t k = 0; k < s.size(); ++k)
        for (std::size_t i = 0; i < 6; ++i) s[k][i] = v[6 * k + i];
    return s;
}

double rms(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return std::sqrt(s / static_cast<double>(v.size()));
}

template <class A, class B>
double max_diff(const A& a, const B& b) {
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    return m;
}

std::vector<std::string> golden_cases() {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(golden_dir)) {
        const auto n = e.path().filename().string();
        if (n.ends_with(".safetensors") && n != "input.safetensors" && n != "prototypes.safetensors")
            out.push_back(n.substr(0, n.size() - 12));
    }
    std::sort(out.begin(), out.end());
    return out;
}

/** Each root of `ours` matched to the nearest unused root of `ref`; the worst distance relative to max(1, |root|). */
double roots_distance(const std::vector<std::complex<double>>& ours, std::vector<std::complex<double>> ref) {
    if (ours.size() != ref.size()) return INFINITY;
    double worst = 0;
    for (const auto& r : ours) {
        std::size_t best = 0;
        for (std::size_t i = 1; i < ref.size(); ++i)
            if (std::abs(ref[i] - r) < std::abs(ref[best] - r)) best = i;
        worst = std::max(worst, std::abs(ref[best] - r) / std::max(1.0, std::abs(r)));
        ref.erase(ref.begin() + static_cast<std::ptrdiff_t>(best));
    }
    return worst;
}

std::vector<std::complex<double>> roots_tensor(const TensorFile& f, const std::string& name) {
    std::vector<std::complex<double>> out;
    if (const auto* t = f.find(name)) {
        const auto v = TensorFile::to_double(*t);
        for (std::size_t i = 0; i + 1 < v.size(); i += 2) out.emplace_back(v[i], v[i + 1]);
    }
    return out;
}

}  // namespace

TEST(FilterPrototypes, MatchScipyForEveryOrder) {
    const auto f = TensorFile::open(golden_dir / "prototypes.safetensors");
    const std::pair<const char*, FilterFamily> fams[] = {{"butter", FilterFamily::butterworth}, {"cheby1", FilterFamily::chebyshev1},
                                                         {"cheby2", FilterFamily::chebyshev2}, {"ellip", FilterFamily::elliptic},
                                                         {"bessel", FilterFamily::bessel}};
    double worst_all = 0;
    for (const auto& [name, fam] : fams) {
        double worst = 0;
        for (int n = 1; n <= 32; ++n) {
            const double rp = fam == FilterFamily::elliptic ? 0.5 : 1.0, rs = fam == FilterFamily::elliptic ? 60.0 : 40.0;
            const auto z = analog_prototype(fam, n, rp, rs);
            const std::string key = std::string(name) + "." + std::to_string(n);
            const double dp = roots_distance(z.poles, roots_tensor(f, key + ".poles"));
            const double dz = roots_distance(z.zeros, roots_tensor(f, key + ".zeros"));
            const double k = TensorFile::to_double(*f.find(key + ".gain"))[0];
            const double dk = std::abs(z.gain - k) / std::abs(k);
            EXPECT_LE(dp, 1e-9) << key << " poles";
            EXPECT_LE(dz, 1e-9) << key << " zeros";
            EXPECT_LE(dk, 1e-9) << key << " gain";
            worst = std::max({worst, dp, dz, dk});
        }
        std::printf("prototype %-7s orders 1..32: worst relative difference to scipy %.1e\n", name, worst);
        worst_all = std::max(worst_all, worst);
    }
    EXPECT_LE(worst_all, 1e-9);
}

TEST(FilterGolden, DesignStreamAndZeroPhaseMatchScipy) {
    const auto cases = golden_cases();
    ASSERT_EQ(cases.size(), 23u) << "golden files missing from tests/golden/filters (run make_filter_golden.py)";
    const auto in_file = TensorFile::open(golden_dir / "input.safetensors");
    const auto input = TensorFile::to_float(*in_file.find("input"));
    const std::vector<double> input64(input.begin(), input.end());
    std::printf("%-16s %3s %9s %9s %9s | %9s %9s | %9s %9s\n", "case", "S", "sos diff", "|H| diff", "H diff", "f32 filt",
                "f64 filt", "f32 zp", "f64 zp");
    double worst32 = 0, worst64 = 0, worst32zp = 0, worst64zp = 0;
    std::map<std::string, std::array<double, 5>> by_family;  // H diff, f32, f64, f32 zero-phase, f64 zero-phase
    for (const auto& name : cases) {
        SCOPED_TRACE(name);
        const auto f = TensorFile::open(golden_dir / (name + ".safetensors"));
        const auto spec = spec_from_json(nlohmann::json::parse(f.metadata().at("spec")));
        const Sos ref = sos_from_tensor(*f.find("sos"));
        const auto y_ref = TensorFile::to_double(*f.find("sosfilt"));
        const auto yy_ref = TensorFile::to_double(*f.find("sosfiltfilt"));
        const Sos ours = design_sos(spec);

        // (a) the design
        ASSERT_EQ(ours.size(), ref.size());
        double dsos = 0;
        for (std::size_t k = 0; k < ours.size(); ++k)
            for (std::size_t i = 0; i < 6; ++i) dsos = std::max(dsos, std::abs(ours[k][i] - ref[k][i]) / std::max(1.0, std::abs(ref[k][i])));
        std::vector<double> hz;
        for (int i = 0; i < 3000; ++i) hz.push_back(spec.sample_rate / 2 * i / 3000.0);  // linear to Nyquist
        for (int i = 0; i < 1000; ++i) hz.push_back(spec.sample_rate / 2 * std::pow(10.0, -5.0 + 5.0 * i / 1000.0));  // log near DC
        const auto h = frequency_response(ours, hz, spec.sample_rate);
        const auto h_ref = frequency_response(ref, hz, spec.sample_rate);
        double dh = 0, dmag = 0;
        for (std::size_t i = 0; i < h.size(); ++i) {
            dh = std::max(dh, std::abs(h[i] - h_ref[i]));
            dmag = std::max(dmag, std::abs(std::abs(h[i]) - std::abs(h_ref[i])));
        }
        EXPECT_LE(dsos, 1e-9) << "our sections differ from scipy's (pairing or order)";
        EXPECT_LE(dh, 1e-9) << "frequency response";

        // (b) streaming, float32 I/O, against sosfilt; and our float64 cascade
        const auto model = design(spec);
        const double r = rms(y_ref);
        double e32 = 0;
        for (std::size_t block : {1u, 64u, 1000u}) {
            const auto y = run_stream(model, input, block);
            e32 = std::max(e32, max_diff(y, y_ref) / r);
        }
        const double e64 = max_diff(sosfilt(ours, input64), y_ref) / r;
        EXPECT_LE(e32, 1e-4);
        // (c) zero-phase against sosfiltfilt
        const double rr = rms(yy_ref);
        const double z32 = max_diff(filtfilt(*model, input), yy_ref) / rr;
        const double z64 = max_diff(sosfiltfilt(ours, input64), yy_ref) / rr;
        EXPECT_LE(z32, 1e-4);
        EXPECT_LE(max_diff(sosfiltfilt(ref, input64), yy_ref) / rr, 1e-10) << "our sosfiltfilt on scipy's own sections";
        std::printf("%-16s %3zu %9.1e %9.1e %9.1e | %9.1e %9.1e | %9.1e %9.1e\n", name.c_str(), ours.size(), dsos, dmag, dh,
                    e32, e64, z32, z64);
        auto& fam = by_family[name.substr(0, name.find('_'))];
        const double row[5] = {dh, e32, e64, z32, z64};
        for (std::size_t i = 0; i < 5; ++i) fam[i] = std::max(fam[i], row[i]);
        worst32 = std::max(worst32, e32), worst64 = std::max(worst64, e64);
        worst32zp = std::max(worst32zp, z32), worst64zp = std::max(worst64zp, z64);
    }
    std::printf("worst, as max|ours - scipy| / RMS(scipy): stream f32 %.1e, f64 %.1e; zero-phase f32 %.1e, f64 %.1e\n",
                worst32, worst64, worst32zp, worst64zp);
    std::printf("\n| family | max abs H diff | stream f32 vs sosfilt | f64 vs sosfilt | zero-phase f32 vs sosfiltfilt | f64 vs sosfiltfilt |\n"
                "| --- | --- | --- | --- | --- | --- |\n");
    for (const auto& [fam, w] : by_family)
        std::printf("| %s | %.1e | %.1e | %.1e | %.1e | %.1e |\n", fam.c_str(), w[0], w[1], w[2], w[3], w[4]);
}

TEST(FilterDesign, HighOrdersAreStableAndMeetTheirSpecs) {
    // Order 32 band-pass/band-stop (64 poles) in every family: every section stable, the gain where promised.
    for (auto fam : {FilterFamily::butterworth, FilterFamily::chebyshev1, FilterFamily::chebyshev2, FilterFamily::elliptic,
                     FilterFamily::bessel}) {
        for (auto type : {FilterType::lowpass, FilterType::highpass, FilterType::bandpass, FilterType::bandstop}) {
            FilterSpec s{.family = fam, .type = type, .order = 32, .sample_rate = 250, .cutoff = 10, .low = 0.5, .high = 40,
                         .ripple_db = 1, .attenuation_db = 80};
            SCOPED_TRACE(std::string(to_string(fam)) + " " + std::string(to_string(type)));
            Sos sos;
            ASSERT_NO_THROW(sos = design_sos(s));
            EXPECT_EQ(sos.size(), type == FilterType::bandpass || type == FilterType::bandstop ? 32u : 16u);
            for (const auto& q : sos) EXPECT_TRUE(std::abs(q[5]) < 1 && std::abs(q[4]) < 1 + q[5]) << "unstable section";
            ASSERT_NO_THROW(design(s));  // the loader's stability check agrees
            const double mid = type == FilterType::bandpass ? 10 : type == FilterType::bandstop ? 100 : type == FilterType::lowpass ? 1 : 100;
            const std::vector<double> at{mid};
            const double g = std::abs(frequency_response(sos, at, 250)[0]);
            const double floor_db = fam == FilterFamily::chebyshev1 || fam == FilterFamily::elliptic ? -1.001 : -3.01;
            if (fam != FilterFamily::bessel) {
                EXPECT_GE(20 * std::log10(g), floor_db) << "passband gain at " << mid << " Hz";
            }
            EXPECT_LE(g, 1.0 + 1e-9) << "passband gain at " << mid << " Hz";
        }
    }
}

TEST(FilterDesign, BadParametersAreRejectedWithTheirName) {
    auto expect_error = [](FilterSpec s, const std::string& needle) {
        try {
            design_sos(s);
            ADD_FAILURE() << "accepted, expected an error about " << needle;
        } catch (const UsageError& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    const FilterSpec lp{.family = FilterFamily::butterworth, .type = FilterType::lowpass, .order = 4, .sample_rate = 250, .cutoff = 40};
    auto with = [&](auto f) {
        FilterSpec s = lp;
        f(s);
        return s;
    };
    expect_error(with([](FilterSpec& s) { s.cutoff = 125; }), "Nyquist");
    expect_error(with([](FilterSpec& s) { s.cutoff = 300; }), "Nyquist");
    expect_error(with([](FilterSpec& s) { s.cutoff = 0; }), "cutoff");
    expect_error(with([](FilterSpec& s) { s.cutoff = NAN; }), "cutoff");
    expect_error(with([](FilterSpec& s) { s.order = 0; }), "order must be in 1..32");
    expect_error(with([](FilterSpec& s) { s.order = 33; }), "order must be in 1..32");
    expect_error(with([](FilterSpec& s) { s.sample_rate = 0; }), "sample rate");
    expect_error(with([](FilterSpec& s) { s.type = FilterType::bandpass, s.low = 40, s.high = 0.5; }), "reversed");
    expect_error(with([](FilterSpec& s) { s.type = FilterType::bandstop, s.low = 10, s.high = 130; }), "high edge");
    expect_error(with([](FilterSpec& s) { s.family = FilterFamily::chebyshev1; }), "ripple");
    expect_error(with([](FilterSpec& s) { s.family = FilterFamily::chebyshev2; }), "attenuation");
    expect_error(with([](FilterSpec& s) { s.family = FilterFamily::elliptic, s.ripple_db = 3, s.attenuation_db = 2; }), "must exceed");
    expect_error({.family = FilterFamily::notch, .sample_rate = 250, .notch_hz = 50, .q = 30, .harmonics = 3}, "Nyquist");
    expect_error({.family = FilterFamily::notch, .sample_rate = 250, .notch_hz = 50, .q = 0}, "Q");
    expect_error({.family = FilterFamily::dc_blocker, .sample_rate = 250, .cutoff = -1}, "cutoff");
    EXPECT_THROW(filter_family_from_string("chebyshev3"), UsageError);
    EXPECT_THROW(filter_type_from_string("allpass"), UsageError);
}

TEST(FilterDesign, ModelFileDescribesTheFilter) {
    const FilterSpec s{.family = FilterFamily::butterworth, .type = FilterType::bandpass, .order = 4, .sample_rate = 250,
                       .low = 0.5, .high = 40};
    const auto m = design(s, 2);
    EXPECT_EQ(m->info().in_channels, 2u);
    EXPECT_EQ(m->info().out_channels, 2u);
    EXPECT_EQ(m->info().sample_rate, 250);
    EXPECT_EQ(m->info().parameters, 4u * 6u);
    EXPECT_EQ(m->info().state_floats, 2u * 4u * 2u * 3u);  // channels × sections × 2 doubles × 3 floats each
    ASSERT_EQ(m->info().layers.size(), 1u);
    const auto& line = m->info().layers[0];
    for (const char* part : {"sos 'filter'", "2 ch", "4 sections", "butter bandpass", "order 4", "0.5-40 Hz", "at 250 Hz"})
        EXPECT_NE(line.find(part), std::string::npos) << line;
    EXPECT_TRUE(is_lti_filter(*m));
}

TEST(FilterZeroPhase, RefusesOtherModelsAndShortSignals) {
    const FilterSpec s{.family = FilterFamily::butterworth, .type = FilterType::lowpass, .order = 3, .sample_rate = 250, .cutoff = 20};
    const auto m = design(s);
    const Sos sos = design_sos(s);
    EXPECT_EQ(filtfilt_padlen(sos), 3u * (2 * 2 + 1 - 1));  // one first-order section (b2 = a2 = 0)
    std::vector<float> short_sig(filtfilt_padlen(sos), 1.0f);
    EXPECT_THROW(filtfilt(*m, short_sig), UsageError);
    short_sig.push_back(1.0f);
    EXPECT_NO_THROW(filtfilt(*m, short_sig));
    S4DModelSpec spec;
    const auto s4 = make_s4d_model(spec);
    EXPECT_FALSE(is_lti_filter(*s4));
    try {
        filtfilt(*s4, std::vector<float>(1000, 0.0f));
        ADD_FAILURE() << "a trained model was filtered forward-backward";
    } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("only of sos layers"), std::string::npos) << e.what();
    }
    // A constant signal passes a low-pass unchanged in zero-phase mode (the sosfilt_zi start removes the transient).
    const auto y = filtfilt(*m, std::vector<float>(500, 2.0f));
    for (float v : y) ASSERT_NEAR(v, 2.0f, 1e-5f);
}

TEST(FilterZeroPhase, MultichannelAndChainedLayersAreOneCascade) {
    // Two sos layers filtfilt as their concatenated sections; each channel on its own.
    const FilterSpec a{.family = FilterFamily::butterworth, .type = FilterType::highpass, .order = 2, .sample_rate = 250, .cutoff = 1};
    const FilterSpec b{.family = FilterFamily::notch, .sample_rate = 250, .notch_hz = 50, .q = 20};
    const auto bytes = chain_filter_bytes(b, TensorFile::from_bytes(filter_model_bytes(a, 2), "hp"), FilterPlacement::after);
    const auto m = Model::from_tensor_file(TensorFile::from_bytes(bytes, "hp+notch"));
    ASSERT_EQ(m->layers().size(), 2u);
    Sos all = design_sos(a);
    for (const auto& q : design_sos(b)) all.push_back(q);
    const auto in = random_signal(3000, 2, 5);
    const auto y = filtfilt(*m, in);
    for (std::size_t c = 0; c < 2; ++c) {
        std::vector<double> x(3000);
        for (std::size_t t = 0; t < 3000; ++t) x[t] = in[t * 2 + c];
        const auto ref = sosfiltfilt(all, x);
        double m_ = 0;
        for (std::size_t t = 0; t < 3000; ++t) m_ = std::max(m_, std::abs(y[t * 2 + c] - ref[t]));
        EXPECT_LE(m_, 1e-5) << "channel " << c;
    }
}
