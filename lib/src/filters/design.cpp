// Classic IIR design from the textbook maths, in double precision, following scipy.signal's conventions so that a
// design here has the response of the same scipy call (tests/golden/filters/ pins that):
//   analogue prototype (zpk at 1 rad/s) → lp2lp/lp2hp/lp2bp/lp2bs → bilinear with pre-warped edges → SOS.
// Elliptic functions by the Landen transformation (S. J. Orfanidis, "Lecture notes on elliptic filter design",
// 2006); Bessel poles as the roots of the reverse Bessel polynomial by Aberth's simultaneous iteration.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numbers>

#include "ssmstream/error.hpp"
#include "ssmstream/filters.hpp"

namespace ssm {

namespace {

using cd = std::complex<double>;
using std::numbers::pi;
constexpr cd J{0.0, 1.0};

std::string num(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return b;
}

// ---- Jacobi elliptic functions by descending Landen transformations --------------------------------------------
// For modulus k, the Landen sequence k_n = (k_{n-1} / (1 + k'_{n-1}))², k_0 = k, falls to 0 quadratically; then
// K(k) = π/2 · Π(1 + k_n), and cd(uK, k), sn(uK, k) follow from cos/sin(uπ/2) by the ascending recurrences.

std::vector<double> landen(double k) {
    std::vector<double> v;
    for (int i = 0; i < 64 && k > 1e-17; ++i) {  // k' from k² loses nothing here: k < 1 strictly on entry
        const double kp = std::sqrt((1.0 - k) * (1.0 + k));
        k = (k / (1.0 + kp)) * (k / (1.0 + kp));
        v.push_back(k);
    }
    return v;
}

double ellip_k(double k) {
    double K = pi / 2;
    for (double vn : landen(k)) K *= 1.0 + vn;
    return K;
}

/** cd(u·K, k) for complex u. */
cd cde(cd u, double k) {
    const auto v = landen(k);
    cd w = std::cos(u * (pi / 2));
    for (auto it = v.rbegin(); it != v.rend(); ++it) w = (1.0 + *it) * w / (1.0 + *it * w * w);
    return w;
}

/** sn(u·K, k) for complex u. */
cd sne(cd u, double k) {
    const auto v = landen(k);
    cd w = std::sin(u * (pi / 2));
    for (auto it = v.rbegin(); it != v.rend(); ++it) w = (1.0 + *it) * w / (1.0 + *it * w * w);
    return w;
}

/** Symmetric remainder: x − y·round(x / y). */
double srem(double x, double y) { return x - y * std::round(x / y); }

/** u with cd(u·K, k) = w, reduced to the fundamental rectangle (Re u in [−2, 2], Im u in [−K'/K, K'/K]). */
cd acde(cd w, double k) {
    const auto v = landen(k);
    for (std::size_t n = 0; n < v.size(); ++n) {
        const double prev = n == 0 ? k : v[n - 1];
        w = w / (1.0 + std::sqrt(1.0 - w * w * prev * prev)) * (2.0 / (1.0 + v[n]));
    }
    const cd u = 2.0 / pi * std::acos(w);
    const double R = ellip_k(std::sqrt((1.0 - k) * (1.0 + k))) / ellip_k(k);
    return {srem(u.real(), 4.0), srem(u.imag(), 2.0 * R)};
}

/** u with sn(u·K, k) = w. */
cd asne(cd w, double k) { return 1.0 - acde(w, k); }

/** The elliptic modulus k of an order-N filter whose discrimination modulus is k1 (the degree equation), solved
 * exactly through the complementary moduli: k' = k1'^N · Π sn(u_i K1', k1')⁴, u_i = (2i − 1)/N. */
double ellip_degree(int N, double k1) {
    const double k1p = std::sqrt((1.0 - k1) * (1.0 + k1));
    double prod = 1.0;
    for (int i = 1; i <= N / 2; ++i) prod *= sne((2.0 * i - 1.0) / N, k1p).real();
    const double kp = std::pow(k1p, N) * std::pow(prod, 4);
    return std::sqrt((1.0 - kp) * (1.0 + kp));
}

// ---- Analogue prototypes ------------------------------------------------------------------------------------------

Zpk butter_ap(int N) {
    Zpk z;
    for (int m = -N + 1; m < N; m += 2) z.poles.push_back(-std::exp(J * (pi * m / (2.0 * N))));
    z.gain = 1;
    return z;
}

cd prod_neg(const std::vector<cd>& v) {
    cd p = 1;
    for (const auto& x : v) p *= -x;
    return p;
}

Zpk cheby1_ap(int N, double rp) {
    const double eps = std::sqrt(std::pow(10.0, 0.1 * rp) - 1.0);
    const double mu = std::asinh(1.0 / eps) / N;
    Zpk z;
    for (int m = -N + 1; m < N; m += 2) z.poles.push_back(-std::sinh(cd(mu, pi * m / (2.0 * N))));
    z.gain = prod_neg(z.poles).real();
    if (N % 2 == 0) z.gain /= std::sqrt(1.0 + eps * eps);  // even orders start at the bottom of the ripple
    return z;
}

Zpk cheby2_ap(int N, double rs) {
    const double de = 1.0 / std::sqrt(std::pow(10.0, 0.1 * rs) - 1.0);
    const double mu = std::asinh(1.0 / de) / N;
    Zpk z;
    for (int m = -N + 1; m < N; m += 2) {
        if (m != 0) z.zeros.push_back(J / std::sin(pi * m / (2.0 * N)));  // T_N(1/Ω) = 0
        const cd q = -std::exp(J * (pi * m / (2.0 * N)));
        z.poles.push_back(1.0 / cd(std::sinh(mu) * q.real(), std::cosh(mu) * q.imag()));
    }
    z.gain = (prod_neg(z.poles) / prod_neg(z.zeros)).real();
    return z;
}

Zpk ellip_ap(int N, double rp, double rs) {
    const double ep = std::sqrt(std::pow(10.0, 0.1 * rp) - 1.0);
    const double es = std::sqrt(std::pow(10.0, 0.1 * rs) - 1.0);
    const double k1 = ep / es;
    const double k = ellip_degree(N, k1);
    const double v0 = (-J * asne(J / ep, k1) / static_cast<double>(N)).real();
    Zpk z;
    for (int i = 1; i <= N / 2; ++i) {
        const double u = (2.0 * i - 1.0) / N;
        const cd zi = J / (k * cde(u, k));
        const cd pi_ = J * cde(cd(u, -v0), k);
        z.zeros.push_back(zi);
        z.zeros.push_back(std::conj(zi));
        z.poles.push_back(pi_);
        z.poles.push_back(std::conj(pi_));
    }
    if (N % 2 == 1) z.poles.push_back({(J * sne(J * v0, k)).real(), 0.0});
    const double h0 = N % 2 == 0 ? std::pow(10.0, -rp / 20.0) : 1.0;
    z.gain = h0 * (prod_neg(z.poles) / prod_neg(z.zeros)).real();
    return z;
}

// Reverse Bessel polynomial θ_N(s) = Σ (2N−k)! / (2^(N−k) k! (N−k)!) s^k. Its roots are badly conditioned in double
// (evaluated in double, they lose ~15 digits by N = 32), so they are found in binary128 (`quad`, software floating
// point of GCC and Clang), evaluating θ_N and θ_N' by the three-term recurrence θ_n = (2n−1) θ_{n−1} + s² θ_{n−2}.
__extension__ typedef __float128 quad;

struct CQ {  // a complex binary128 with just the arithmetic Aberth's iteration needs
    quad re = 0, im = 0;
    CQ() = default;
    CQ(quad r, quad i = 0) : re(r), im(i) {}
    friend CQ operator+(CQ a, CQ b) { return {a.re + b.re, a.im + b.im}; }
    friend CQ operator-(CQ a, CQ b) { return {a.re - b.re, a.im - b.im}; }
    friend CQ operator*(CQ a, CQ b) { return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }
    friend CQ operator/(CQ a, CQ b) {
        // scaled by the larger component of b, so that |b|² cannot overflow for θ_N's large values
        const quad ar = b.re < 0 ? -b.re : b.re, ai = b.im < 0 ? -b.im : b.im;
        if (ar >= ai) {
            const quad r = b.im / b.re, d = b.re + b.im * r;
            return {(a.re + a.im * r) / d, (a.im - a.re * r) / d};
        }
        const quad r = b.re / b.im, d = b.re * r + b.im;
        return {(a.re * r + a.im) / d, (a.im * r - a.re) / d};
    }
    double abs() const { return std::hypot(static_cast<double>(re), static_cast<double>(im)); }
};

void bessel_theta(int N, CQ s, CQ& f, CQ& df) {
    CQ t0 = 1, d0 = 0, t1 = s + CQ(1), d1 = 1;
    const CQ s2 = s * s;
    for (int n = 2; n <= N; ++n) {
        const CQ k(static_cast<quad>(2 * n - 1));
        const CQ t2 = k * t1 + s2 * t0;
        const CQ d2 = k * d1 + CQ(2) * s * t0 + s2 * d0;
        t0 = t1, d0 = d1, t1 = t2, d1 = d2;
    }
    f = t1, df = d1;
}

// 'phase' normalisation: θ_N(s·c) / θ_N(0) with c = θ_N(0)^(1/N) has the high-frequency asymptote of a Butterworth
// filter of the same order (so its phase reaches −Nπ/4 at 1 rad/s), unit DC gain and k = 1.
Zpk bessel_ap(int N) {
    double a0 = 1;
    for (int n = 1; n <= N; ++n) a0 *= 2.0 * n - 1.0;  // θ_N(0) = (2N − 1)!!
    const double c = std::pow(a0, 1.0 / N);
    // Aberth–Ehrlich from the Butterworth poles scaled by c (conjugate-symmetric starts; the real one stays real).
    std::vector<CQ> x;
    for (const auto& p : butter_ap(N).poles) x.emplace_back(static_cast<quad>(p.real() * c), static_cast<quad>(p.imag() * c));
    int polish = 0;
    for (int it = 0; it < 300; ++it) {
        double worst = 0;
        std::vector<CQ> next(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
            CQ f, df;
            bessel_theta(N, x[i], f, df);
            const CQ newton = f / df;
            CQ sum = 0;
            for (std::size_t j = 0; j < x.size(); ++j)
                if (j != i) sum = sum + CQ(1) / (x[i] - x[j]);
            const CQ w = newton / (CQ(1) - newton * sum);
            next[i] = x[i] - w;
            worst = std::max(worst, w.abs() / x[i].abs());
        }
        x = next;
        // Converged once the steps fall to binary128's noise floor here (~1e-17 relative at N = 32; cubic
        // convergence gets there in about a dozen iterations), far below what double keeps; one more step polishes.
        if (worst < 1e-16 && ++polish > 1) break;
    }
    Zpk z;
    for (const auto& r : x) {
        const cd p(static_cast<double>(r.re) / c, static_cast<double>(r.im) / c);
        z.poles.push_back(std::abs(p.imag()) < 1e-14 * std::abs(p) ? cd(p.real(), 0.0) : p);
    }
    z.gain = 1;
    return z;
}

// ---- Frequency transformations (zpk, analogue) ---------------------------------------------------------------------

std::size_t relative_degree(const Zpk& z) { return z.poles.size() - z.zeros.size(); }

Zpk lp2lp(Zpk z, double wo) {
    const auto d = relative_degree(z);
    for (auto& v : z.zeros) v *= wo;
    for (auto& v : z.poles) v *= wo;
    z.gain *= std::pow(wo, static_cast<double>(d));
    return z;
}

Zpk lp2hp(const Zpk& z, double wo) {
    const auto d = relative_degree(z);
    Zpk r;
    for (const auto& v : z.zeros) r.zeros.push_back(wo / v);
    for (const auto& v : z.poles) r.poles.push_back(wo / v);
    r.zeros.insert(r.zeros.end(), d, cd(0.0));  // the zeros at infinity move to the origin
    r.gain = z.gain * (prod_neg(z.zeros) / prod_neg(z.poles)).real();
    return r;
}

Zpk lp2bp(const Zpk& z, double wo, double bw) {
    const auto d = relative_degree(z);
    Zpk r;
    auto split = [&](const std::vector<cd>& in, std::vector<cd>& out) {
        for (const auto& v : in) {
            const cd h = v * (bw / 2);
            out.push_back(h + std::sqrt(h * h - wo * wo));
        }
        for (const auto& v : in) {
            const cd h = v * (bw / 2);
            out.push_back(h - std::sqrt(h * h - wo * wo));
        }
    };
    split(z.zeros, r.zeros);
    split(z.poles, r.poles);
    r.zeros.insert(r.zeros.end(), d, cd(0.0));
    r.gain = z.gain * std::pow(bw, static_cast<double>(d));
    return r;
}

Zpk lp2bs(const Zpk& z, double wo, double bw) {
    // s → bw·s / (s² + wo²): a finite prototype root r becomes the two roots of r·s² − bw·s + r·wo² = 0, and each
    // zero at infinity becomes the pair ±j·wo.
    const auto d = relative_degree(z);
    Zpk r;
    auto split = [&](const std::vector<cd>& in, std::vector<cd>& out) {
        for (const auto& v : in) {
            const cd h = (bw / 2) / v;
            out.push_back(h + std::sqrt(h * h - wo * wo));
        }
        for (const auto& v : in) {
            const cd h = (bw / 2) / v;
            out.push_back(h - std::sqrt(h * h - wo * wo));
        }
    };
    split(z.zeros, r.zeros);
    split(z.poles, r.poles);
    r.zeros.insert(r.zeros.end(), d, cd(0.0, wo));
    r.zeros.insert(r.zeros.end(), d, cd(0.0, -wo));
    r.gain = z.gain * (prod_neg(z.zeros) / prod_neg(z.poles)).real();
    return r;
}

/** s → z = (2·fs + s) / (2·fs − s); zeros at infinity go to z = −1. */
Zpk bilinear(const Zpk& z, double fs) {
    const double fs2 = 2 * fs;
    const auto d = relative_degree(z);
    Zpk r;
    for (const auto& v : z.zeros) r.zeros.push_back((fs2 + v) / (fs2 - v));
    for (const auto& v : z.poles) r.poles.push_back((fs2 + v) / (fs2 - v));
    r.zeros.insert(r.zeros.end(), d, cd(-1.0));
    cd num_ = 1, den = 1;
    for (const auto& v : z.zeros) num_ *= fs2 - v;
    for (const auto& v : z.poles) den *= fs2 - v;
    r.gain = z.gain * (num_ / den).real();
    return r;
}

// ---- zpk → SOS (pairing = 'nearest') -------------------------------------------------------------------------------

struct Split {
    std::vector<cd> complex;  // one of each conjugate pair (positive imaginary part), sorted by real part, then |imag|
    std::vector<double> real;  // sorted by value
};

// Real where |imag| ≤ 100·eps·|z|; conjugate pairs matched after sorting and averaged (scipy's _cplxreal contract).
Split split_conjugates(const std::vector<cd>& v) {
    constexpr double tol = 100 * 2.220446049250313e-16;
    Split s;
    std::vector<cd> pos, neg;
    for (const auto& x : v) {
        if (std::abs(x.imag()) <= tol * std::abs(x)) s.real.push_back(x.real());
        else if (x.imag() > 0) pos.push_back(x);
        else neg.push_back(std::conj(x));
    }
    if (pos.size() != neg.size()) throw ConfigError("zpk_to_sos: the roots are not in conjugate pairs");
    auto order = [](const cd& a, const cd& b) {
        return a.real() != b.real() ? a.real() < b.real() : std::abs(a.imag()) < std::abs(b.imag());
    };
    std::sort(pos.begin(), pos.end(), order);
    std::sort(neg.begin(), neg.end(), order);
    for (std::size_t i = 0; i < pos.size(); ++i) {
        if (std::abs(pos[i] - neg[i]) > 1e-6 * std::max(1.0, std::abs(pos[i])))
            throw ConfigError("zpk_to_sos: the roots are not in conjugate pairs");
        s.complex.push_back((pos[i] + neg[i]) / 2.0);
    }
    std::sort(s.real.begin(), s.real.end());
    return s;
}

// One root of the remaining set: complex ones first (in split order), then the real ones, as scipy concatenates.
struct Root {
    cd v;
    bool real;
};

std::vector<Root> roots_of(const Split& s) {
    std::vector<Root> r;
    for (const auto& c : s.complex) r.push_back({c, false});
    for (double x : s.real) r.push_back({cd(x, 0.0), true});
    return r;
}

template <class Pred, class Key>
std::size_t argmin(const std::vector<Root>& r, Pred ok, Key key) {
    std::size_t best = r.size();
    double bk = 0;
    for (std::size_t i = 0; i < r.size(); ++i) {
        if (!ok(r[i])) continue;
        const double k = key(r[i]);
        if (best == r.size() || k < bk) best = i, bk = k;  // first of equals, as numpy's argmin
    }
    return best;
}

Root take(std::vector<Root>& r, std::size_t i) {
    if (i >= r.size()) throw ConfigError("zpk_to_sos: pairing ran out of roots");
    const Root x = r[i];
    r.erase(r.begin() + static_cast<std::ptrdiff_t>(i));
    return x;
}

std::array<double, 3> quadratic(cd r1, cd r2) {
    return {1.0, -(r1 + r2).real(), (r1 * r2).real()};
}

}  // namespace

Sos zpk_to_sos(const Zpk& zpk) {
    if (zpk.zeros.empty() && zpk.poles.empty()) return {{zpk.gain, 0, 0, 1, 0, 0}};
    auto z = zpk.zeros, p = zpk.poles;
    // Equal numbers of poles and zeros, padded at the origin, and an even count (a first-order system becomes one
    // section with a pole and a zero at the origin).
    const std::size_t n = std::max(z.size(), p.size());
    z.resize(n, cd(0.0));
    p.resize(n, cd(0.0));
    if (n % 2 == 1) {
        z.push_back(0.0);
        p.push_back(0.0);
    }
    const std::size_t sections = z.size() / 2;
    auto zr = roots_of(split_conjugates(z));
    auto pr = roots_of(split_conjugates(p));
    auto is_real = [](const Root& r) { return r.real; };
    auto is_complex = [](const Root& r) { return !r.real; };
    auto any = [](const Root&) { return true; };
    auto unit_distance = [](const Root& r) { return std::abs(1.0 - std::abs(r.v)); };
    Sos sos(sections);
    // The poles closest to the unit circle are taken first and go last in the cascade.
    for (std::size_t si = sections; si-- > 0;) {
        const Root p1 = take(pr, argmin(pr, any, unit_distance));
        const std::size_t real_p_left = static_cast<std::size_t>(std::count_if(pr.begin(), pr.end(), is_real));
        const std::size_t real_z_left = static_cast<std::size_t>(std::count_if(zr.begin(), zr.end(), is_real));
        cd P1 = p1.v, P2, Z1, Z2;
        auto near = [](cd to) { return [to](const Root& r) { return std::abs(r.v - to); }; };
        if (p1.real && real_p_left == 0) {
            // a lone real pole: a first-order section with the nearest real zero (not reached after the padding above)
            Z1 = take(zr, argmin(zr, is_real, near(p1.v))).v;
            P2 = 0, Z2 = 0;
        } else {
            Root z1;
            if (!p1.real && real_z_left == 1) z1 = take(zr, argmin(zr, is_complex, near(p1.v)));  // keep the real one
            else z1 = take(zr, argmin(zr, any, near(p1.v)));
            Z1 = z1.v;
            if (!p1.real && !z1.real) {
                P2 = std::conj(P1), Z2 = std::conj(Z1);
            } else if (!p1.real && z1.real) {
                P2 = std::conj(P1);
                Z2 = take(zr, argmin(zr, is_real, near(p1.v))).v;
            } else if (p1.real && !z1.real) {
                Z2 = std::conj(Z1);
                P2 = take(pr, argmin(pr, is_real, near(z1.v))).v;
            } else {
                P2 = take(pr, argmin(pr, is_real, unit_distance)).v;
                Z2 = take(zr, argmin(zr, is_real, near(P2))).v;
            }
        }
        const auto b = quadratic(Z1, Z2), a = quadratic(P1, P2);
        sos[si] = {b[0], b[1], b[2], a[0], a[1], a[2]};
    }
    for (int i = 0; i < 3; ++i) sos[0][static_cast<std::size_t>(i)] *= zpk.gain;
    return sos;
}

std::string_view to_string(FilterFamily f) noexcept {
    switch (f) {
        case FilterFamily::butterworth: return "butter";
        case FilterFamily::chebyshev1: return "cheby1";
        case FilterFamily::chebyshev2: return "cheby2";
        case FilterFamily::elliptic: return "ellip";
        case FilterFamily::bessel: return "bessel";
        case FilterFamily::notch: return "notch";
        case FilterFamily::dc_blocker: return "dcblock";
    }
    return "?";
}

std::string_view to_string(FilterType t) noexcept {
    switch (t) {
        case FilterType::lowpass: return "lowpass";
        case FilterType::highpass: return "highpass";
        case FilterType::bandpass: return "bandpass";
        case FilterType::bandstop: return "bandstop";
    }
    return "?";
}

FilterFamily filter_family_from_string(std::string_view s) {
    if (s == "butter" || s == "butterworth") return FilterFamily::butterworth;
    if (s == "cheby1" || s == "chebyshev1") return FilterFamily::chebyshev1;
    if (s == "cheby2" || s == "chebyshev2") return FilterFamily::chebyshev2;
    if (s == "ellip" || s == "elliptic") return FilterFamily::elliptic;
    if (s == "bessel") return FilterFamily::bessel;
    if (s == "notch" || s == "comb") return FilterFamily::notch;
    if (s == "dcblock" || s == "dc_blocker") return FilterFamily::dc_blocker;
    throw UsageError("unknown filter family '" + std::string(s) +
                     "' (butter, cheby1, cheby2, ellip, bessel, notch, comb, dcblock)");
}

FilterType filter_type_from_string(std::string_view s) {
    if (s == "lowpass") return FilterType::lowpass;
    if (s == "highpass") return FilterType::highpass;
    if (s == "bandpass") return FilterType::bandpass;
    if (s == "bandstop") return FilterType::bandstop;
    throw UsageError("unknown filter type '" + std::string(s) + "' (lowpass, highpass, bandpass, bandstop)");
}

void validate(const FilterSpec& s) {
    auto fail = [](const std::string& m) { throw UsageError(m); };
    if (!(std::isfinite(s.sample_rate) && s.sample_rate > 0)) fail("the sample rate must be a positive number of Hz");
    const double nyq = s.sample_rate / 2;
    auto inside = [&](double f, const char* what) {
        if (!std::isfinite(f) || f <= 0) fail(std::string(what) + " must be a positive frequency in Hz, got " + num(f));
        if (f >= nyq)
            fail(std::string(what) + " " + num(f) + " Hz is at or above the Nyquist frequency " + num(nyq) + " Hz (rate " +
                 num(s.sample_rate) + " Hz)");
    };
    const bool iir = s.family != FilterFamily::notch && s.family != FilterFamily::dc_blocker;
    if (iir && (s.order < 1 || s.order > 32)) fail("order must be in 1..32, got " + std::to_string(s.order));
    const bool uses_ripple = s.family == FilterFamily::chebyshev1 || s.family == FilterFamily::elliptic;
    const bool uses_atten = s.family == FilterFamily::chebyshev2 || s.family == FilterFamily::elliptic;
    if (uses_ripple && !(std::isfinite(s.ripple_db) && s.ripple_db > 0))
        fail(std::string(to_string(s.family)) + " needs a passband ripple > 0 dB, got " + num(s.ripple_db));
    if (uses_atten && !(std::isfinite(s.attenuation_db) && s.attenuation_db > 0))
        fail(std::string(to_string(s.family)) + " needs a stopband attenuation > 0 dB, got " + num(s.attenuation_db));
    if (s.family == FilterFamily::elliptic && s.attenuation_db <= s.ripple_db)
        fail("ellip: the stopband attenuation (" + num(s.attenuation_db) + " dB) must exceed the passband ripple (" +
             num(s.ripple_db) + " dB)");
    if (s.family == FilterFamily::notch) {
        inside(s.notch_hz, "the notch frequency");
        if (!(std::isfinite(s.q) && s.q > 0)) fail("the notch Q must be > 0, got " + num(s.q));
        if (s.harmonics < 1 || s.harmonics > 64) fail("harmonics must be in 1..64, got " + std::to_string(s.harmonics));
        if (s.notch_hz * s.harmonics >= nyq)
            fail("harmonic " + std::to_string(s.harmonics) + " of " + num(s.notch_hz) + " Hz (" + num(s.notch_hz * s.harmonics) +
                 " Hz) is at or above the Nyquist frequency " + num(nyq) + " Hz");
        return;
    }
    if (s.family == FilterFamily::dc_blocker) {
        inside(s.cutoff, "the cutoff");
        return;
    }
    if (s.type == FilterType::lowpass || s.type == FilterType::highpass) {
        inside(s.cutoff, "the cutoff");
    } else {
        inside(s.low, "the band's low edge");
        inside(s.high, "the band's high edge");
        if (s.low >= s.high) fail("the band is reversed or empty: low " + num(s.low) + " Hz must be below high " + num(s.high) + " Hz");
    }
}

Zpk analog_prototype(FilterFamily family, int order, double ripple_db, double attenuation_db) {
    if (order < 1 || order > 32) throw UsageError("order must be in 1..32, got " + std::to_string(order));
    switch (family) {
        case FilterFamily::butterworth: return butter_ap(order);
        case FilterFamily::chebyshev1: return cheby1_ap(order, ripple_db);
        case FilterFamily::chebyshev2: return cheby2_ap(order, attenuation_db);
        case FilterFamily::elliptic: return ellip_ap(order, ripple_db, attenuation_db);
        case FilterFamily::bessel: return bessel_ap(order);
        default: throw UsageError(std::string(to_string(family)) + " has no analogue prototype");
    }
}

Zpk design_zpk(const FilterSpec& s) {
    validate(s);
    if (s.family == FilterFamily::notch) {
        // Each notch: zeros on the unit circle at ±ω0, poles at the radius that gives a −3 dB width of ω0/Q
        // (the second-order notch of Orfanidis' "Introduction to Signal Processing", as scipy's iirnotch).
        Zpk z;
        z.gain = 1;
        for (int h = 1; h <= s.harmonics; ++h) {
            const double w0 = 2 * pi * s.notch_hz * h / s.sample_rate;
            const double beta = std::tan(w0 / s.q / 2);
            const double g = 1 / (1 + beta);
            const double a1 = -2 * g * std::cos(w0), a2 = 2 * g - 1;
            const cd disc = std::sqrt(cd(a1 * a1 - 4 * a2));
            z.poles.push_back((-a1 + disc) / 2.0);
            z.poles.push_back((-a1 - disc) / 2.0);
            z.zeros.push_back(std::polar(1.0, w0));
            z.zeros.push_back(std::polar(1.0, -w0));
            z.gain *= g;
        }
        return z;
    }
    // Digital edges pre-warped for the bilinear transform at an internal rate of 2 (edges as fractions of Nyquist).
    const double fs = 2.0;
    auto warp = [&](double hz) { return 2 * fs * std::tan(pi * (hz / (s.sample_rate / 2)) / fs); };
    const bool dc = s.family == FilterFamily::dc_blocker;
    const Zpk proto = dc ? butter_ap(1) : analog_prototype(s.family, s.order, s.ripple_db, s.attenuation_db);
    const FilterType type = dc ? FilterType::highpass : s.type;
    Zpk a;
    switch (type) {
        case FilterType::lowpass: a = lp2lp(proto, warp(s.cutoff)); break;
        case FilterType::highpass: a = lp2hp(proto, warp(s.cutoff)); break;
        case FilterType::bandpass:
        case FilterType::bandstop: {
            const double w1 = warp(s.low), w2 = warp(s.high);
            const double bw = w2 - w1, wo = std::sqrt(w1 * w2);
            a = type == FilterType::bandpass ? lp2bp(proto, wo, bw) : lp2bs(proto, wo, bw);
            break;
        }
    }
    return bilinear(a, fs);
}

Sos design_sos(const FilterSpec& s) {
    if (s.family == FilterFamily::notch) {
        validate(s);
        Sos sos;  // one section per notch, lowest frequency first, each with unit gain away from its notch
        for (int h = 1; h <= s.harmonics; ++h) {
            const double w0 = 2 * pi * s.notch_hz * h / s.sample_rate;
            const double g = 1 / (1 + std::tan(w0 / s.q / 2));
            const double c = std::cos(w0);
            sos.push_back({g, -2 * g * c, g, 1.0, -2 * g * c, 2 * g - 1});
        }
        return sos;
    }
    return zpk_to_sos(design_zpk(s));
}

std::vector<std::complex<double>> frequency_response(const Sos& sos, std::span<const double> hz, double rate) {
    std::vector<cd> out;
    out.reserve(hz.size());
    for (double f : hz) {
        const cd e1 = std::polar(1.0, -2 * pi * f / rate), e2 = e1 * e1;
        cd h = 1;
        for (const auto& s : sos) h *= (s[0] + s[1] * e1 + s[2] * e2) / (s[3] + s[4] * e1 + s[5] * e2);
        out.push_back(h);
    }
    return out;
}

}  // namespace ssm
