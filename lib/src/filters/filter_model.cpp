// Designed filters as native model files (one `sos` layer, alone or chained with a trained model's layers), and the
// offline zero-phase path: forward-backward filtering with scipy `sosfiltfilt`'s padding and initial conditions.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "layers/sos.hpp"
#include "ssmstream/error.hpp"
#include "ssmstream/filters.hpp"

namespace ssm {

namespace {

std::string hz(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return b;
}

nlohmann::json design_json(const FilterSpec& s) {
    nlohmann::json d = {{"family", std::string(to_string(s.family))}, {"sample_rate", s.sample_rate}};
    switch (s.family) {
        case FilterFamily::notch:
            d["freq"] = s.notch_hz;
            d["q"] = s.q;
            d["harmonics"] = s.harmonics;
            return d;
        case FilterFamily::dc_blocker:
            d["cutoff"] = s.cutoff;
            return d;
        default: break;
    }
    d["type"] = std::string(to_string(s.type));
    d["order"] = s.order;
    if (s.type == FilterType::lowpass || s.type == FilterType::highpass) d["cutoff"] = s.cutoff;
    else d["band"] = {s.low, s.high};
    if (s.family == FilterFamily::chebyshev1 || s.family == FilterFamily::elliptic) d["ripple_db"] = s.ripple_db;
    if (s.family == FilterFamily::chebyshev2 || s.family == FilterFamily::elliptic) d["attenuation_db"] = s.attenuation_db;
    return d;
}

std::string design_title(const FilterSpec& s) {
    std::string t(to_string(s.family));
    if (s.family != FilterFamily::notch && s.family != FilterFamily::dc_blocker) t += " " + std::string(to_string(s.type));
    return t;
}

nlohmann::json sos_layer(const FilterSpec& s, const Sos& sos, std::size_t channels, const std::string& name) {
    return {{"type", "sos"}, {"name", name}, {"channels", channels}, {"sections", sos.size()}, {"design", design_json(s)}};
}

TensorData sos_tensor(const Sos& sos, const std::string& name) {
    TensorData t{name + ".sos", {static_cast<std::int64_t>(sos.size()), 6}, {}, DType::F64};  // F32 would move poles
    for (const auto& r : sos) t.values.insert(t.values.end(), r.begin(), r.end());
    return t;
}

void step_cascade(const Sos& sos, std::vector<std::array<double, 2>>& st, const double* x, double* y, std::size_t n,
                  std::ptrdiff_t stride) {
    for (std::size_t t = 0; t < n; ++t) {
        double v = *x;
        for (std::size_t k = 0; k < sos.size(); ++k) {
            const auto& q = sos[k];
            const double out = q[0] * v + st[k][0];
            st[k][0] = q[1] * v - q[4] * out + st[k][1];
            st[k][1] = q[2] * v - q[5] * out;
            v = out;
        }
        *y = v;
        x += stride;
        y += stride;
    }
}

/** Per section, the state that a unit step reaches in the steady state, each section fed the DC gain of the ones
 * before it (scipy `sosfilt_zi`). For y = b0·x + s1 at steady state y_ss = Σb / Σa: s1 = y_ss − b0, s2 = b2 − a2·y_ss. */
std::vector<std::array<double, 2>> step_state(const Sos& sos) {
    std::vector<std::array<double, 2>> zi(sos.size());
    double scale = 1;
    for (std::size_t k = 0; k < sos.size(); ++k) {
        const auto& q = sos[k];
        const double y = (q[0] + q[1] + q[2]) / (q[3] + q[4] + q[5]);
        zi[k] = {scale * (q[1] + q[2] - (q[4] + q[5]) * y), scale * (q[2] - q[5] * y)};
        scale *= y;
    }
    return zi;
}

Sos normalised(const Sos& sos) {
    Sos r = sos;
    for (auto& q : r) {
        if (q[3] == 0) throw UsageError("a second-order section has a0 = 0");
        const double a0 = q[3];
        for (auto& v : q) v /= a0;
    }
    return r;
}

}  // namespace

std::vector<double> sosfilt(const Sos& sos_in, std::span<const double> x) {
    const Sos sos = normalised(sos_in);
    std::vector<double> y(x.size());
    std::vector<std::array<double, 2>> st(sos.size(), {0.0, 0.0});
    if (!x.empty()) step_cascade(sos, st, x.data(), y.data(), x.size(), 1);
    return y;
}

std::size_t filtfilt_padlen(const Sos& sos) {
    const auto b2zero = std::count_if(sos.begin(), sos.end(), [](const auto& q) { return q[2] == 0.0; });
    const auto a2zero = std::count_if(sos.begin(), sos.end(), [](const auto& q) { return q[5] == 0.0; });
    return 3 * (2 * sos.size() + 1 - static_cast<std::size_t>(std::min(b2zero, a2zero)));
}

std::vector<double> sosfiltfilt(const Sos& sos_in, std::span<const double> x) {
    const Sos sos = normalised(sos_in);
    const std::size_t n = x.size(), pad = filtfilt_padlen(sos_in);
    if (n <= pad)
        throw UsageError("zero-phase filtering needs more than " + std::to_string(pad) + " samples (the edge padding of scipy's " +
                         "sosfiltfilt for " + std::to_string(sos_in.size()) + " sections), got " + std::to_string(n));
    // Odd extension: the signal mirrored through its end points, `pad` samples each side.
    std::vector<double> ext(n + 2 * pad);
    for (std::size_t i = 0; i < pad; ++i) ext[i] = 2 * x[0] - x[pad - i];
    std::copy(x.begin(), x.end(), ext.begin() + static_cast<std::ptrdiff_t>(pad));
    for (std::size_t i = 0; i < pad; ++i) ext[pad + n + i] = 2 * x[n - 1] - x[n - 2 - i];
    const auto zi = step_state(sos);
    auto st = zi;
    for (std::size_t k = 0; k < st.size(); ++k) st[k] = {zi[k][0] * ext.front(), zi[k][1] * ext.front()};
    std::vector<double> y(ext.size());
    step_cascade(sos, st, ext.data(), y.data(), ext.size(), 1);
    const double last = y.back();
    for (std::size_t k = 0; k < st.size(); ++k) st[k] = {zi[k][0] * last, zi[k][1] * last};
    step_cascade(sos, st, y.data() + y.size() - 1, y.data() + y.size() - 1, y.size(), -1);  // backwards, in place
    return {y.begin() + static_cast<std::ptrdiff_t>(pad), y.begin() + static_cast<std::ptrdiff_t>(pad + n)};
}

std::vector<std::byte> filter_model_bytes(const FilterSpec& spec, std::size_t channels, const std::string& name) {
    if (channels == 0 || channels > (1u << 20)) throw UsageError("a filter needs 1 to 2^20 channels");
    if (name.empty()) throw UsageError("a filter layer needs a name");
    const Sos sos = design_sos(spec);
    const nlohmann::json cfg = {{"format", "ssmstream"},
                                {"version", 1},
                                {"name", design_title(spec)},
                                {"description", "designed by ssm::design_sos (scipy.signal conventions)"},
                                {"sample_rate", spec.sample_rate},
                                {"layers", nlohmann::json::array({sos_layer(spec, sos, channels, name)})}};
    return encode_safetensors({{"ssmstream", cfg.dump()}}, {sos_tensor(sos, name)});
}

std::shared_ptr<const Model> design(const FilterSpec& spec, std::size_t channels) {
    const auto bytes = filter_model_bytes(spec, channels);
    return Model::from_tensor_file(TensorFile::from_bytes(bytes, "designed " + design_title(spec)));
}

std::vector<std::byte> chain_filter_bytes(const FilterSpec& spec, const TensorFile& file, FilterPlacement where) {
    const auto model = Model::from_tensor_file(file);  // validates the model as a whole first
    const auto& mi = model->info();
    if (mi.sample_rate > 0 && std::abs(mi.sample_rate - spec.sample_rate) > 1e-9 * mi.sample_rate)
        throw UsageError("the filter is designed at " + hz(spec.sample_rate) + " Hz but model '" + mi.name + "' runs at " +
                         hz(mi.sample_rate) + " Hz; design it at the model's rate");
    auto cfg = nlohmann::json::parse(model->config_json());
    std::set<std::string> names;
    for (const auto& t : file.tensors()) names.insert(t.name.substr(0, t.name.find('.')));
    std::string name = "filter";
    for (int i = 1; names.count(name); ++i) name = "filter" + std::to_string(i);  // a tensor prefix of its own
    const Sos sos = design_sos(spec);
    const std::size_t channels = where == FilterPlacement::before ? mi.in_channels : mi.out_channels;
    auto& layers = cfg["layers"];
    const auto layer = sos_layer(spec, sos, channels, name);
    if (where == FilterPlacement::before) layers.insert(layers.begin(), layer);
    else layers.push_back(layer);
    cfg["sample_rate"] = spec.sample_rate;
    const std::string what = design_title(spec);
    cfg["name"] = where == FilterPlacement::before ? what + " + " + mi.name : mi.name + " + " + what;
    std::vector<TensorData> tensors;
    for (const auto& t : file.tensors()) tensors.push_back({t.name, t.shape, TensorFile::to_double(t), t.dtype});
    tensors.push_back(sos_tensor(sos, name));
    return encode_safetensors({{"ssmstream", cfg.dump()}}, tensors);
}

bool is_lti_filter(const Model& model) {
    return !model.layers().empty() &&
           std::all_of(model.layers().begin(), model.layers().end(), [](const auto& l) { return detail::sos_sections(*l) != nullptr; });
}

Sos model_sections(const Model& model) {
    Sos all;
    for (const auto& l : model.layers()) {
        const auto* s = detail::sos_sections(*l);
        if (s == nullptr)
            throw UsageError("zero-phase filtering needs a model made only of sos layers (designed filters); model '" +
                             model.info().name + "' has '" + l->describe() + "'");
        all.insert(all.end(), s->begin(), s->end());
    }
    return all;
}

std::vector<float> filtfilt(const Model& model, std::span<const float> in) {
    const Sos sos = model_sections(model);
    const std::size_t C = model.info().in_channels;
    if (in.size() % C != 0)
        throw UsageError("filtfilt: " + std::to_string(in.size()) + " samples is not a whole number of " + std::to_string(C) +
                         "-channel frames");
    const std::size_t n = in.size() / C;
    std::vector<float> out(in.size());
    std::vector<double> x(n);
    for (std::size_t c = 0; c < C; ++c) {
        for (std::size_t t = 0; t < n; ++t) {
            const float v = in[t * C + c];
            x[t] = std::isfinite(v) ? v : 0.0;  // as the streaming engine: a non-finite sample counts as 0
        }
        const auto y = sosfiltfilt(sos, x);
        for (std::size_t t = 0; t < n; ++t) out[t * C + c] = static_cast<float>(y[t]);
    }
    return out;
}

}  // namespace ssm
