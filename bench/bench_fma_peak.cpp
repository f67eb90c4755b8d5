// Single-core float32 FMA peak: independent FMA chains, enough of them to cover the FMA latency on every pipe
// (Zen 4: 2 FMA pipes of 256 bits, latency 4 cycles → ≥ 8 ymm chains; a zmm FMA takes both halves of a pipe
// pair, so ≥ 4 zmm chains). Counters: GFLOPs = GFLOP/s (one FMA = 2 flops per lane).
// Built with per-function target attributes, so the binary runs on any x86-64 and skips what the CPU lacks.
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstdint>

namespace {

constexpr int kChains = 12;
constexpr std::int64_t kInner = 4096;  // FMA rounds per benchmark iteration

__attribute__((target("avx512f"))) float fma_avx512(std::int64_t rounds) {
    __m512 acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(1.0f + 1e-3f * static_cast<float>(c));
    const __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-7f);
    for (std::int64_t r = 0; r < rounds; ++r) {
#pragma GCC unroll 12
        for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], m, a);
    }
    __m512 s = acc[0];
    for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) float fma_avx2(std::int64_t rounds) {
    __m256 acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(1.0f + 1e-3f * static_cast<float>(c));
    const __m256 m = _mm256_set1_ps(0.9999999f), a = _mm256_set1_ps(1e-7f);
    for (std::int64_t r = 0; r < rounds; ++r) {
#pragma GCC unroll 12
        for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], m, a);
    }
    __m256 s = acc[0];
    for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
    alignas(32) float v[8];
    _mm256_store_ps(v, s);
    return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

// Too few chains: latency-bound, shows why the kernels above need 12 (for the README's explanation).
__attribute__((target("avx512f"))) float fma_avx512_one_chain(std::int64_t rounds) {
    __m512 acc = _mm512_set1_ps(1.0f);
    const __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-7f);
    for (std::int64_t r = 0; r < rounds; ++r) acc = _mm512_fmadd_ps(acc, m, a);
    return _mm512_reduce_add_ps(acc);
}

bool has_avx512() { return __builtin_cpu_supports("avx512f"); }
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

template <float (*Kernel)(std::int64_t)>
void run(benchmark::State& state, bool supported, double flops_per_round) {
    if (!supported) {
        state.SkipWithError("this CPU lacks the instruction set");
        return;
    }
    for (auto _ : state) {
        std::int64_t rounds = kInner;
        benchmark::DoNotOptimize(rounds);  // opaque: the kernels are pure and would be hoisted out of the loop
        benchmark::DoNotOptimize(Kernel(rounds));
    }
    state.counters["GFLOPs"] = benchmark::Counter(flops_per_round * kInner * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_FmaPeak_AVX512(benchmark::State& s) { run<fma_avx512>(s, has_avx512(), kChains * 16 * 2); }
void BM_FmaPeak_AVX2(benchmark::State& s) { run<fma_avx2>(s, has_avx2(), kChains * 8 * 2); }
void BM_FmaLatency_AVX512_1chain(benchmark::State& s) { run<fma_avx512_one_chain>(s, has_avx512(), 16 * 2); }

}  // namespace

BENCHMARK(BM_FmaPeak_AVX512);
BENCHMARK(BM_FmaPeak_AVX2);
BENCHMARK(BM_FmaLatency_AVX512_1chain);
BENCHMARK_MAIN();
