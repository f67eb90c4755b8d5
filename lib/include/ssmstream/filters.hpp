#pragma once
/** @file Classic IIR filters as state-space models: design, the `sos` layer's model files, zero-phase filtering.
 *
 * A designed filter is an LTI state-space system stored as second-order sections (SOS) in one `sos` layer of a
 * native model file, so it streams with the same engine as a trained model and can sit anywhere in a layer list.
 *
 * The design follows scipy.signal's conventions, so that a filter designed here has the response of the scipy
 * call named beside each item (all maths in double precision):
 * - analogue prototypes (`buttap`, `cheb1ap`, `cheb2ap`, `ellipap`, `besselap(norm='phase')`),
 * - the frequency transformations `lp2lp/lp2hp/lp2bp/lp2bs` in zero-pole-gain form,
 * - the bilinear transform with pre-warping of the edge frequencies (`iirfilter(..., fs=rate)`),
 * - `zpk2sos(pairing='nearest')`: poles paired with their nearest zeros, starting with the poles closest to the
 *   unit circle, which go last in the cascade.
 * `order` follows scipy too: band-pass and band-stop designs have 2·order poles (order sections).
 */
#include <array>
#include <complex>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ssmstream/model.hpp"
#include "ssmstream/tensor_file.hpp"

namespace ssm {

enum class FilterFamily {
    butterworth,  ///< maximally flat (scipy `butter`)
    chebyshev1,   ///< equiripple passband of `ripple_db` (scipy `cheby1`)
    chebyshev2,   ///< equiripple stopband `attenuation_db` down; the edge is where the stopband starts (`cheby2`)
    elliptic,     ///< equiripple both (scipy `ellip`); the edge is where the gain first drops below −ripple_db
    bessel,       ///< maximally flat group delay, phase-normalised: the phase reaches its midpoint at the edge
    notch,        ///< second-order notch at `notch_hz` (scipy `iirnotch`), and optionally at its harmonics
    dc_blocker,   ///< first-order high-pass with its −3 dB point at `cutoff` (= butterworth, order 1, high-pass)
};

enum class FilterType { lowpass, highpass, bandpass, bandstop };

/** "butter"/"butterworth", "cheby1", "cheby2", "ellip"/"elliptic", "bessel", "notch"/"comb", "dcblock" → family;
 * throws UsageError listing the names otherwise. */
FilterFamily filter_family_from_string(std::string_view name);
/** "lowpass", "highpass", "bandpass", "bandstop" → type; throws UsageError otherwise. */
FilterType filter_type_from_string(std::string_view name);
/** The short names used in files and by the CLI: "butter", "cheby1", …, "dcblock"; "lowpass", …. */
std::string_view to_string(FilterFamily family) noexcept;
std::string_view to_string(FilterType type) noexcept;

/** What to design. Frequencies are in Hz at `sample_rate`; every one must lie strictly inside (0, rate/2). */
struct FilterSpec {
    FilterFamily family = FilterFamily::butterworth;
    FilterType type = FilterType::lowpass;
    int order = 4;              ///< 1..32 (IIR families); band-pass/band-stop get 2·order poles
    double sample_rate = 0;     ///< Hz, required
    double cutoff = 0;          ///< Hz: the edge of a low-pass or high-pass, and of the DC blocker
    double low = 0, high = 0;   ///< Hz: the band of a band-pass or band-stop, low < high
    double ripple_db = 0;       ///< dB of passband ripple: chebyshev1 and elliptic only (required there)
    double attenuation_db = 0;  ///< dB of stopband attenuation: chebyshev2 and elliptic only (required there)
    double notch_hz = 0;        ///< notch: the frequency removed
    double q = 0;               ///< notch: quality factor, notch_hz / (−3 dB width); every harmonic gets the same Q
    int harmonics = 1;          ///< notch: notches at notch_hz·1 … notch_hz·harmonics (all below rate/2)
};

/** Zeros, poles and gain of a transfer function (analogue in s, or digital in z). */
struct Zpk {
    std::vector<std::complex<double>> zeros, poles;
    double gain = 1;
};

/** Second-order sections, each {b0, b1, b2, a0, a1, a2} with a0 = 1 (scipy's `sos` layout), applied in order. */
using Sos = std::vector<std::array<double, 6>>;

/** Throws UsageError naming the first parameter of `spec` that is missing, out of range or inconsistent. */
void validate(const FilterSpec& spec);

/** The analogue low-pass prototype of an IIR family at 1 rad/s (scipy's `*ap` functions). `order` 1..32. */
Zpk analog_prototype(FilterFamily family, int order, double ripple_db = 0, double attenuation_db = 0);
/** The digital design in zero-pole-gain form (validates `spec`). */
Zpk design_zpk(const FilterSpec& spec);
/** zpk → second-order sections with scipy's `pairing='nearest'` (digital systems only). */
Sos zpk_to_sos(const Zpk& zpk);
/** The digital design as second-order sections (validates `spec`). */
Sos design_sos(const FilterSpec& spec);

/** H(e^{jω}) of the cascade at each frequency in `hz` (ω = 2π·f / rate). */
std::vector<std::complex<double>> frequency_response(const Sos& sos, std::span<const double> hz, double sample_rate);

/** One channel through the cascade from zero state (scipy `sosfilt`), transposed direct form II, in double. */
std::vector<double> sosfilt(const Sos& sos, std::span<const double> x);
/** The padding `sosfiltfilt` uses by default: 3·(2·S + 1 − min(#sections with b2 = 0, #sections with a2 = 0)). */
std::size_t filtfilt_padlen(const Sos& sos);
/** Zero-phase forward-backward filtering of one channel, exactly as scipy `sosfiltfilt(sos, x)` (odd extension of
 * `filtfilt_padlen` samples at both ends, `sosfilt_zi` initial conditions scaled by the first sample of each pass).
 * Throws UsageError when x has `filtfilt_padlen(sos)` samples or fewer (scipy refuses those too). */
std::vector<double> sosfiltfilt(const Sos& sos, std::span<const double> x);

/** The bytes of a native model file holding the design as one `sos` layer named `name` over `channels` channels
 * (the same cascade on each channel), with the design parameters in the layer's config for `ssm info`. */
std::vector<std::byte> filter_model_bytes(const FilterSpec& spec, std::size_t channels = 1,
                                          const std::string& layer_name = "filter");
/** The designed filter as a loaded Model. */
std::shared_ptr<const Model> design(const FilterSpec& spec, std::size_t channels = 1);

/** Where `chain_filter_bytes` puts the filter relative to the existing model's layers. */
enum class FilterPlacement { before, after };
/** A native model file that runs the designed filter before (or after) every layer of the native model `model`:
 * the filter's channels are the model's input (or output) width, and the model's tensors are kept as stored. Throws
 * UsageError when the model declares a sample rate other than `spec.sample_rate`. */
std::vector<std::byte> chain_filter_bytes(const FilterSpec& spec, const TensorFile& model, FilterPlacement where);

/** True when every layer of `model` is an `sos` layer (what zero-phase filtering needs). */
bool is_lti_filter(const Model& model);
/** All `sos` layers of `model`, in order, as one cascade (throws UsageError unless `is_lti_filter`). */
Sos model_sections(const Model& model);
/** Zero-phase filtering of interleaved frames × in_channels by a model made only of `sos` layers: each channel
 * through `sosfiltfilt` of the whole cascade, in double, float32 in and out. Offline only (it needs the whole
 * signal). Throws UsageError for other models or a signal of `filtfilt_padlen` frames or fewer. */
std::vector<float> filtfilt(const Model& model, std::span<const float> in);

}  // namespace ssm
