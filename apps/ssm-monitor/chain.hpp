#pragma once
// --chain SPEC: the per-channel processing chain, comma-separated, applied left to right. Elements:
//   notch:F[:Q]            second-order notch at F Hz (Q default 30)
//   bandpass:LO:HI[:N]     Butterworth band-pass, order N (default 2: 4 poles)
//   highpass:F[:N] lowpass:F[:N]   Butterworth, order N (default 2)
//   dcblock:F              first-order DC blocker with its −3 dB point at F
//   PATH                   a native model file (1 channel in, 1 out); its sample rate must be the stream's
// Filters are designed (ssm::design) for each stream's sample rate at hello; model files load once at start.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ssmstream/ssmstream.hpp"

namespace ssm::monitor {

class Chain {
public:
    /** Parses SPEC; loads model files. Throws ssm::UsageError (or the loader's error) naming the element. */
    static Chain parse(const std::string& spec);
    /** The models for a stream at `rate`, one per element (filters designed once per rate, cached; thread-safe).
     * Throws ssm::UsageError when an element cannot run at this rate (a model for another rate, a cut-off at or
     * above Nyquist). */
    std::vector<std::shared_ptr<const Model>> models_for(double rate) const;
    std::size_t size() const noexcept { return elems_.size(); }
    const std::string& text() const noexcept { return text_; }
    bool has_model_file() const noexcept;

private:
    struct Element {
        std::string text;
        bool is_file = false;
        FilterSpec spec;
        std::shared_ptr<const Model> model;
    };
    std::string text_;
    std::vector<Element> elems_;
    mutable std::shared_ptr<std::mutex> mu_ = std::make_shared<std::mutex>();
    mutable std::shared_ptr<std::map<double, std::vector<std::shared_ptr<const Model>>>> cache_ =
        std::make_shared<std::map<double, std::vector<std::shared_ptr<const Model>>>>();
};

}  // namespace ssm::monitor
