// Plugin CPU per 64-frame block at 48 kHz for the shipped models, through the LV2 entry points (dlopen, a model
// loaded by patch:Set through the worker, run() per block) — what a host's audio thread pays. The ECG denoiser
// (360 Hz) and the hum remover (16 kHz) are both resampled inside at 48 kHz; "passthrough" is the plugin with no
// model (mixing, ramps, dry delay). Names: BM_Lv2Run/<model>/<variant>/rate:48000/block:64.
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include "lv2_host.hpp"

namespace {

void run_plugin(benchmark::State& state, const std::string& model, const std::string& uri, double rate, std::uint32_t block) {
    ssm::test::Lv2Host h(SSM_LV2_SO, uri, rate);
    if (!h.ok()) {
        state.SkipWithError(h.error.c_str());
        return;
    }
    if (!model.empty()) {
        h.load_model(std::string(SSM_SOURCE_DIR) + "/models/" + model + "/" + model + ".safetensors", block);
        if (h.status != 1.0f) {
            state.SkipWithError(h.log.c_str());
            return;
        }
    }
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0.0f, 0.1f);
    for (auto& ch : h.in)
        for (auto& v : ch) v = d(rng);
    for (int i = 0; i < 200; ++i) h.run(block);  // past the crossfade and the converters' start
    for (auto _ : state) {
        h.run(block);
        benchmark::DoNotOptimize(h.out[0][0]);
    }
    state.counters["latency_frames"] = h.latency;
    state.counters["realtime_x"] = benchmark::Counter(static_cast<double>(block) / rate, benchmark::Counter::kIsIterationInvariantRate);
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * block);
}

}  // namespace

int main(int argc, char** argv) {
    for (const char* model : {"passthrough", "ecg-denoiser", "hum-remover"}) {
        for (const char* variant : {"mono", "stereo"}) {
            const std::string name = std::string("BM_Lv2Run/") + model + "/" + variant + "/rate:48000/block:64";
            const std::string m = std::string(model) == "passthrough" ? "" : model;
            const std::string uri = std::string("urn:ssmstream:lv2:") + variant;
            benchmark::RegisterBenchmark(name.c_str(), [m, uri](benchmark::State& s) { run_plugin(s, m, uri, 48000, 64); })
                ->Unit(benchmark::kMicrosecond);
        }
    }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
