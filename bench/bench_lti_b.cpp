// Time-invariant families, part B (S4 DPLR) benchmarks (Google Benchmark); bench/run_lti_b.sh runs them beside the
// reference (bench/lti_b_peer.py) in one run.
//
//   BM_S4Stream/H:/N:/block:   one `s4` layer (S4Block defaults: rank 1, gelu, glu) streamed through ssm::Stream,
//                              `block` frames per process call: ns_per_sample = ns per frame (all H channels) per
//                              layer; ns_per_channel_sample = that / H.
//   BM_S4Batch/H:/N:/threads:  the same layer through ssm::Batch (blocked recurrence, channel groups over threads)
//                              on 2^18 frames: Msamples_per_s = frames × H per second.
//   BM_Stream / BM_Batch with family 1 (H3, d_model H, d_state N) and 2 (GSS, dim H, dss_kernel_H H, dss_kernel_N N,
//                              expansion 4): the same measurements for those layers.
//   BM_HippoStream/H:/N:/block:, BM_HippoBatch/H:/N:   a HiPPO-LegS operator (ssm::hippo, order N) on H channels.
// Streaming rates use the thread's CPU time (the peer script uses process CPU time at 1 thread too): on a loaded
// shared machine wall time mostly measures the other jobs. Batch rates are wall-clock (several threads).
// The layer's weights are random in the ranges of a trained S4 (HiPPO-LegS-like spectrum, dt in [1e-3, 1e-1]),
// with l_kernel = 1024 (the saved C is C~, as in a trained checkpoint).
#include <benchmark/benchmark.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "bench_models.hpp"
#include "ssmstream/hippo.hpp"
#include "ssmstream/ssmstream.hpp"

namespace {

using namespace ssm;

std::shared_ptr<const Model> s4_layer(std::size_t H, std::size_t N) {
    const auto h = static_cast<std::int64_t>(H), n2 = static_cast<std::int64_t>(N / 2);
    std::mt19937 rng(42);
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> ud;
    auto fill = [&](std::vector<std::int64_t> shape, auto gen) {
        std::size_t count = 1;
        for (auto s : shape) count *= static_cast<std::size_t>(s);
        std::vector<double> v(count);
        for (std::size_t i = 0; i < count; ++i) v[i] = gen(i);
        return v;
    };
    const std::string k = "s4.layer.kernel.";
    std::vector<TensorData> t;
    t.push_back({k + "inv_dt", {h, 1}, fill({h, 1}, [&](std::size_t) { return std::log(1e-3) + ud(rng) * std::log(100.0); })});
    t.push_back({k + "A_real", {h, n2}, fill({h, n2}, [&](std::size_t) { return std::log(0.5) + 0.3 * nd(rng); })});
    t.push_back({k + "A_imag", {h, n2}, fill({h, n2}, [&](std::size_t i) { return M_PI * static_cast<double>(i % (N / 2)); })});
    t.push_back({k + "B", {1, h, n2, 2}, fill({1, h, n2, 2}, [&](std::size_t) { return nd(rng); })});
    t.push_back({k + "C", {1, h, n2, 2}, fill({1, h, n2, 2}, [&](std::size_t) { return 0.5 * nd(rng); })});
    t.push_back({k + "P", {1, h, n2, 2}, fill({1, h, n2, 2}, [&](std::size_t i) { return std::sqrt(static_cast<double>(i / 2 % (N / 2)) + 0.5) * (i % 2 ? 0.0 : 1.0); })});
    t.push_back({k + "l_kernel", {}, {1024.0}, DType::F64});
    t.push_back({"s4.layer.D", {1, h}, fill({1, h}, [&](std::size_t) { return nd(rng); })});
    t.push_back({"s4.output_linear.0.weight", {2 * h, h}, fill({2 * h, h}, [&](std::size_t) { return nd(rng) / std::sqrt(static_cast<double>(H)); })});
    t.push_back({"s4.output_linear.0.bias", {2 * h}, fill({2 * h}, [&](std::size_t) { return 0.1 * nd(rng); })});
    nlohmann::json cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", "bench-s4"}, {"sample_rate", 0},
                          {"layers", {{{"type", "s4"}, {"name", "s4"}, {"d_model", H}, {"d_state", N}}}}};
    const auto bytes = encode_safetensors({{"ssmstream", cfg.dump()}}, t);
    return Model::from_tensor_file(TensorFile::from_bytes(bytes, "bench-s4"));
}

// An H3 layer (d_model H, d_state N) and a GSS block (dim H, expansion 4, dss H, dss N) with random weights.
std::shared_ptr<const Model> h3_layer(std::size_t H, std::size_t N) {
    const auto h = static_cast<std::int64_t>(H), n = static_cast<std::int64_t>(N), n2 = n / 2;
    std::mt19937 rng(3);
    std::normal_distribution<double> nd;
    auto rnd = [&](std::int64_t count, double scale, double offset = 0) {
        std::vector<double> v(static_cast<std::size_t>(count));
        for (auto& x : v) x = offset + scale * nd(rng);
        return v;
    };
    std::vector<TensorData> t;
    for (const char* pj : {"q_proj", "k_proj", "v_proj", "output_linear"}) {
        t.push_back({std::string("h3.") + pj + ".weight", {h, h}, rnd(h * h, 1.0 / std::sqrt(static_cast<double>(H)))});
        t.push_back({std::string("h3.") + pj + ".bias", {h}, rnd(h, 0.1)});
    }
    t.push_back({"h3.ssm_k_kernel.kernel.B", {h, n}, rnd(h * n, 0.3)});
    t.push_back({"h3.ssm_k_kernel.kernel.C", {1, h, n}, rnd(h * n, 0.3)});
    t.push_back({"h3.ssm_k_D", {h}, rnd(h, 1.0)});
    t.push_back({"h3.kernel.kernel.log_dt", {h}, rnd(h, 0.5, std::log(0.01))});
    t.push_back({"h3.kernel.kernel.inv_A_real", {h, n2}, rnd(h * n2, 0.1, std::log(0.5))});
    t.push_back({"h3.kernel.kernel.A_imag", {h, n2}, rnd(h * n2, 3.0)});
    t.push_back({"h3.kernel.kernel.B", {h, n2, 2}, rnd(h * n2 * 2, 1.0)});
    t.push_back({"h3.kernel.kernel.C", {1, h, n2, 2}, rnd(h * n2 * 2, 0.5)});
    t.push_back({"h3.D", {h}, rnd(h, 1.0)});
    nlohmann::json cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", "bench-h3"}, {"sample_rate", 0},
                          {"layers", {{{"type", "h3"}, {"name", "h3"}, {"d_model", H}, {"d_state", N}}}}};
    return Model::from_tensor_file(TensorFile::from_bytes(encode_safetensors({{"ssmstream", cfg.dump()}}, t), "bench-h3"));
}

std::shared_ptr<const Model> gss_block(std::size_t D, std::size_t Hd, std::size_t N) {
    const auto d = static_cast<std::int64_t>(D), e = 4 * d, hd = static_cast<std::int64_t>(Hd), n = static_cast<std::int64_t>(N);
    std::mt19937 rng(4);
    std::normal_distribution<double> nd;
    auto rnd = [&](std::int64_t count, double scale, double offset = 0) {
        std::vector<double> v(static_cast<std::size_t>(count));
        for (auto& x : v) x = offset + scale * nd(rng);
        return v;
    };
    std::vector<TensorData> t = {
        {"g.norm.weight", {d}, rnd(d, 0.1, 1)}, {"g.norm.bias", {d}, rnd(d, 0.1)},
        {"g.to_u.0.weight", {e, d}, rnd(e * d, 0.1)}, {"g.to_v.0.weight", {hd, d}, rnd(hd * d, 0.1)},
        {"g.dss.norm.weight", {hd}, rnd(hd, 0.1, 1)}, {"g.dss.norm.bias", {hd}, rnd(hd, 0.1)},
        {"g.dss.Lambda_real", {n}, rnd(n, 0.5, -2)}, {"g.dss.Lambda_imag", {n}, rnd(n, 1.0)},
        {"g.dss.C_real", {hd, n}, rnd(hd * n, 0.1)}, {"g.dss.C_imag", {hd, n}, rnd(hd * n, 0.1)},
        {"g.dss.param_D", {hd}, rnd(hd, 1.0)}, {"g.to_gate.weight", {e, hd}, rnd(e * hd, 0.1)},
        {"g.to_out.weight", {d, e}, rnd(d * e, 0.05)}, {"g.to_out.bias", {d}, rnd(d, 0.1)}};
    nlohmann::json cfg = {{"format", "ssmstream"}, {"version", 1}, {"name", "bench-gss"}, {"sample_rate", 0},
                          {"layers", {{{"type", "gss"}, {"name", "g"}, {"dim", D}}}}};
    return Model::from_tensor_file(TensorFile::from_bytes(encode_safetensors({{"ssmstream", cfg.dump()}}, t), "bench-gss"));
}

std::vector<float> noise(std::size_t n) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

enum Family { kS4 = 0, kH3 = 1, kGss = 2 };
std::shared_ptr<const Model> family_model(int f, std::size_t H, std::size_t N) {
    return f == kS4 ? s4_layer(H, N) : f == kH3 ? h3_layer(H, N) : gss_block(H, H, N);
}

void BM_S4Stream(benchmark::State& st) {
    const auto H = static_cast<std::size_t>(st.range(0)), N = static_cast<std::size_t>(st.range(1)),
               block = static_cast<std::size_t>(st.range(2));
    auto model = family_model(static_cast<int>(st.range(3)), H, N);
    Stream s(model);
    s.prepare({0, block, 0});
    const std::size_t T = 2048;
    const auto in = noise(T * H);
    std::vector<float> out(T * H);
    for (auto _ : st) {
        for (std::size_t f = 0; f < T; f += block) s.process(in.data() + f * H, out.data() + f * H, block);
        benchmark::ClobberMemory();
    }
    const double frames = static_cast<double>(T);
    st.counters["ns_per_sample"] = benchmark::Counter(frames * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    st.counters["ns_per_channel_sample"] = benchmark::Counter(frames * static_cast<double>(H) * 1e-9,
                                                              benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_S4Batch(benchmark::State& st) {
    const auto H = static_cast<std::size_t>(st.range(0)), N = static_cast<std::size_t>(st.range(1)),
               threads = static_cast<std::size_t>(st.range(2));
    auto model = family_model(static_cast<int>(st.range(3)), H, N);
    BatchOptions o;
    o.threads = threads;
    o.backend = st.range(4) == 1 ? Backend::recurrence : Backend::automatic;
    Batch batch(model, o);
    st.SetLabel(bench::plan_label(batch));
    const std::size_t T = std::size_t{1} << 16;
    const auto in = noise(T * H);
    for (auto _ : st) {
        batch.reset();
        auto out = batch.run(in);
        benchmark::DoNotOptimize(out.data());
    }
    st.counters["Msamples_per_s"] = benchmark::Counter(static_cast<double>(T * H) * 1e-6, benchmark::Counter::kIsIterationInvariantRate);
    st.counters["ns_per_sample"] = benchmark::Counter(static_cast<double>(T) * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// HiPPO-LegS operator, `channels` = H independent channels of order N (dense N×N step per channel).
void BM_HippoStream(benchmark::State& st) {
    const auto H = static_cast<std::size_t>(st.range(0)), N = static_cast<std::size_t>(st.range(1)),
               block = static_cast<std::size_t>(st.range(2));
    hippo::Spec sp;
    sp.order = N;
    sp.channels = H;
    sp.dt = 1e-3;
    auto model = hippo::make_model(sp);
    Stream s(model);
    s.prepare({0, block, 0});
    const std::size_t T = 512;
    const auto in = noise(T * H);
    std::vector<float> out(T * H * N);
    for (auto _ : st) {
        for (std::size_t f = 0; f < T; f += block) s.process(in.data() + f * H, out.data() + f * H * N, block);
        benchmark::ClobberMemory();
    }
    st.counters["ns_per_sample"] = benchmark::Counter(static_cast<double>(T) * 1e-9, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    st.counters["ns_per_channel_sample"] = benchmark::Counter(static_cast<double>(T * H) * 1e-9,
                                                              benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_HippoBatch(benchmark::State& st) {
    const auto H = static_cast<std::size_t>(st.range(0)), N = static_cast<std::size_t>(st.range(1));
    hippo::Spec sp;
    sp.order = N;
    sp.channels = H;
    sp.dt = 1e-3;
    auto model = hippo::make_model(sp);
    BatchOptions o;
    o.backend = st.range(2) == 1 ? Backend::recurrence : Backend::automatic;
    Batch batch(model, o);
    st.SetLabel(bench::plan_label(batch));
    const std::size_t T = std::size_t{1} << 15;
    const auto in = noise(T * H);
    for (auto _ : st) {
        batch.reset();
        auto out = batch.run(in);
        benchmark::DoNotOptimize(out.data());
    }
    st.counters["Msamples_per_s"] = benchmark::Counter(static_cast<double>(T * H) * 1e-6, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK(BM_HippoStream)->ArgNames({"H", "N", "block"})->Args({64, 64, 1})->Args({64, 64, 64})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_HippoBatch)->ArgNames({"H", "N", "recurrence"})->Args({64, 64, 0})->Args({64, 64, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
// family: 0 = S4, 1 = H3, 2 = GSS (dim 64, dss H 64, dss N 64, expansion 4)
BENCHMARK(BM_S4Stream)->Name("BM_Stream")->ArgNames({"H", "N", "block", "family"})
    ->Args({64, 64, 1, kS4})->Args({64, 64, 64, kS4})->Args({64, 64, 256, kS4})
    ->Args({64, 64, 1, kH3})->Args({64, 64, 64, kH3})->Args({64, 64, 1, kGss})->Args({64, 64, 64, kGss})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_S4Batch)->Name("BM_Batch")->ArgNames({"H", "N", "threads", "family", "recurrence"})
    ->Args({64, 64, 1, kS4, 0})->Args({64, 64, 2, kS4, 0})->Args({64, 64, 1, kS4, 1})
    ->Args({64, 64, 1, kH3, 0})->Args({64, 64, 2, kH3, 0})->Args({64, 64, 1, kH3, 1})
    ->Args({64, 64, 1, kGss, 0})->Args({64, 64, 2, kGss, 0})->Args({64, 64, 1, kGss, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
