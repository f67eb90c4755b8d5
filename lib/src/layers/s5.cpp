// S5 — the simplified state-space layer of Smith, Warrington & Linderman 2023, as lindermanlab/S5 `s5/ssm.py`
// (`S5SSM`) defines it, inference only. Parameters under the layer's name, as the flax module names them:
//   Λ = Lambda_re + i·Lambda_im [P] (with clip_eigs: Re Λ clipped to ≤ −1e-4),   B̃ = B[..., 0] + i·B[..., 1] [P, H],
//   C̃ = C[..., 0] + i·C[..., 1] [H, P],   D [H],   Δ = step_rescale · exp(log_step[:, 0]) [P]
//   zoh:      Λ̄ = exp(ΛΔ),                    B̄ = (Λ̄ − 1)/Λ · B̃
//   bilinear: Λ̄ = (1 + ΔΛ/2)/(1 − ΔΛ/2),     B̄ = Δ/(1 − ΔΛ/2) · B̃
//   x_t = Λ̄ ⊙ x_{t−1} + B̄ u_t,   y_t = Re(C̃ x_t) (× 2 with conj_sym: the conjugate half is implicit) + D ⊙ u_t
// The bidirectional variant runs a second scan backwards in time: not causal, so it is refused.
// `activation` adds the S5 SequenceLayer's activation (gelu, full_glu, half_glu1, half_glu2; see SeqActivation).
// Discretisation happens once here, in double; the recurrence is the diagonal MIMO core shared with LRU.
#include <cmath>

#include "layers/diag_mimo.hpp"
#include "ssmstream/error.hpp"

namespace ssm::detail {

namespace {

class S5 final : public DiagMimoLayer {
public:
    std::string disc;
    bool conj_sym = true;
    std::size_t param_count() const noexcept override { return 3 * m.P + 4 * m.P * m.H + m.H + act.param_count(); }
    std::string describe() const override {
        return "s5 '" + name + "' H=" + std::to_string(m.H) + " P=" + std::to_string(m.P) + " disc=" + disc +
               (conj_sym ? " conj_sym" : "") + " activation=" + act.kind_name;
    }
};

}  // namespace

std::unique_ptr<Layer> make_s5(const nlohmann::json& c, Params& p, std::size_t in_width) {
    check_fields(c, {"d_model", "d_state", "discretization", "conj_sym", "clip_eigs", "step_rescale", "bidirectional",
                    "activation", "dense_prefix"});
    auto l = std::make_unique<S5>();
    l->name = get_string(c, "name", "", true);
    const std::size_t Hs = get_size(c, "d_model", in_width, false), Ps = get_size(c, "d_state");
    l->disc = get_string(c, "discretization", "zoh");
    if (l->disc != "zoh" && l->disc != "bilinear")
        throw ConfigError("layer " + layer_label(c) + ": discretization '" + l->disc + "' is not supported (zoh, bilinear)");
    l->conj_sym = get_bool(c, "conj_sym", true);
    const bool clip = get_bool(c, "clip_eigs", false);
    const double rescale = get_number(c, "step_rescale", 1.0);
    if (!(rescale > 0) || !std::isfinite(rescale))
        throw ConfigError("layer " + layer_label(c) + ": step_rescale must be a positive number");
    if (get_bool(c, "bidirectional", false))
        throw ConfigError("layer " + layer_label(c) + ": bidirectional S5 scans backwards in time and cannot stream "
                          "(train with bidirectional=False for a causal model)");
    const auto H = static_cast<std::int64_t>(Hs), P = static_cast<std::int64_t>(Ps);
    const std::string& nm = l->name;
    const auto lre = p.take(nm + ".Lambda_re", {P});
    const auto lim = p.take(nm + ".Lambda_im", {P});
    const auto Bv = p.take(nm + ".B", {P, H, 2});
    const auto Cv = p.take(nm + ".C", {H, P, 2});
    const auto D = p.take(nm + ".D", {H});
    const auto log_step = p.take(nm + ".log_step", {P, 1});

    using cd = std::complex<double>;
    std::vector<cd> lam(Ps), B(Ps * Hs), C(Hs * Ps);
    const double cscale = l->conj_sym ? 2.0 : 1.0;
    for (std::size_t n = 0; n < Ps; ++n) {
        const cd L(clip ? std::min(lre[n], -1e-4) : lre[n], lim[n]);
        const double dt = rescale * std::exp(log_step[n]);
        cd lb, gain;
        if (l->disc == "zoh") {
            lb = std::exp(L * dt);
            gain = (lb - 1.0) / L;
        } else {
            const cd bl = 1.0 / (1.0 - dt / 2.0 * L);
            lb = bl * (1.0 + dt / 2.0 * L);
            gain = bl * dt;
        }
        lam[n] = lb;
        const bool finite = std::isfinite(lb.real()) && std::isfinite(lb.imag()) && std::isfinite(gain.real()) &&
                            std::isfinite(gain.imag());
        if (!finite || std::abs(lb) > 1.0)
            throw ConfigError("layer " + layer_label(c) + ": state " + std::to_string(n) +
                              ": Lambda_re/Lambda_im/log_step give a non-finite or growing recurrence (|Λ̄| = " +
                              std::to_string(std::abs(lb)) + " > 1; Re Λ must be ≤ 0, or set clip_eigs)");
        for (std::size_t h = 0; h < Hs; ++h) B[n * Hs + h] = gain * cd(Bv[2 * (n * Hs + h)], Bv[2 * (n * Hs + h) + 1]);
    }
    for (std::size_t i = 0; i < Hs * Ps; ++i) C[i] = cscale * cd(Cv[2 * i], Cv[2 * i + 1]);
    l->m.set(lam, B, C, D);
    l->act.load(c, p, Hs);
    return l;
}

}  // namespace ssm::detail
