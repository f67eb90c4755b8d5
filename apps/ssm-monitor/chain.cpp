#include "chain.hpp"

#include <cmath>
#include <sstream>

namespace ssm::monitor {
namespace {
std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    std::istringstream is(s);
    while (std::getline(is, cur, sep)) out.push_back(cur);
    if (!s.empty() && s.back() == sep) out.emplace_back();
    return out;
}
double num(const std::string& elem, const std::string& s) {
    try {
        std::size_t used = 0;
        const double v = std::stod(s, &used);
        if (used != s.size() || !std::isfinite(v)) throw std::invalid_argument(s);
        return v;
    } catch (const std::exception&) {
        throw ssm::UsageError("--chain element '" + elem + "': '" + s + "' is not a number");
    }
}
}  // namespace

Chain Chain::parse(const std::string& spec) {
    Chain c;
    c.text_ = spec;
    if (spec.empty()) return c;
    for (const auto& e : split(spec, ',')) {
        if (e.empty()) throw ssm::UsageError("--chain: empty element in '" + spec + "'");
        Element el;
        el.text = e;
        const auto p = split(e, ':');
        const std::string& k = p[0];
        auto need = [&](std::size_t lo, std::size_t hi) {
            if (p.size() < lo || p.size() > hi)
                throw ssm::UsageError("--chain element '" + e + "': wrong number of parameters");
        };
        FilterSpec& f = el.spec;
        if (k == "notch") {
            need(2, 3);
            f.family = FilterFamily::notch;
            f.notch_hz = num(e, p[1]);
            f.q = p.size() > 2 ? num(e, p[2]) : 30;
        } else if (k == "bandpass" || k == "bandstop") {
            need(3, 4);
            f.type = k == "bandpass" ? FilterType::bandpass : FilterType::bandstop;
            f.low = num(e, p[1]);
            f.high = num(e, p[2]);
            f.order = p.size() > 3 ? static_cast<int>(num(e, p[3])) : 2;
        } else if (k == "highpass" || k == "lowpass") {
            need(2, 3);
            f.type = k == "highpass" ? FilterType::highpass : FilterType::lowpass;
            f.cutoff = num(e, p[1]);
            f.order = p.size() > 2 ? static_cast<int>(num(e, p[2])) : 2;
        } else if (k == "dcblock") {
            need(2, 2);
            f.family = FilterFamily::dc_blocker;
            f.type = FilterType::highpass;
            f.cutoff = num(e, p[1]);
            f.order = 1;
        } else {
            el.is_file = true;
            el.model = Model::load(e);
            const auto& in = el.model->info();
            if (in.in_channels != 1 || in.out_channels != 1)
                throw ssm::UsageError("--chain model " + e + " has " + std::to_string(in.in_channels) + " in / " +
                                      std::to_string(in.out_channels) + " out channels; the monitor runs one per channel (1 in, 1 out)");
        }
        c.elems_.push_back(std::move(el));
    }
    return c;
}

bool Chain::has_model_file() const noexcept {
    for (const auto& e : elems_)
        if (e.is_file) return true;
    return false;
}

std::vector<std::shared_ptr<const Model>> Chain::models_for(double rate) const {
    std::lock_guard lk(*mu_);
    if (auto it = cache_->find(rate); it != cache_->end()) return it->second;
    std::vector<std::shared_ptr<const Model>> out;
    for (const auto& e : elems_) {
        if (e.is_file) {
            const double r = e.model->info().sample_rate;
            if (r != 0 && r != rate) {
                std::ostringstream os;
                os << "chain element " << e.text << " is a model for " << r << " Hz; this stream is " << rate
                   << " Hz (resample on the device or use a model for this rate)";
                throw ssm::UsageError(os.str());
            }
            out.push_back(e.model);
        } else {
            FilterSpec f = e.spec;
            f.sample_rate = rate;
            try {
                out.push_back(design(f, 1));
            } catch (const ssm::Error& err) {
                throw ssm::UsageError("chain element " + e.text + " at " + std::to_string(rate) + " Hz: " + err.what());
            }
        }
    }
    (*cache_)[rate] = out;
    return out;
}

}  // namespace ssm::monitor
