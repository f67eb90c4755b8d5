// Time-invariant families of lti-a (LRU, S5, …): parity with the reference code's own outputs (golden files from
// tests/golden/make_<family>_golden.py, in tests/golden/lti_a/), streaming == batch over 10⁶ samples, bit-identical
// blocks, state save/load across views, no allocation in `process`, and the importer's refusal of a checkpoint with
// a missing, surplus or mis-shaped tensor (the message names it).
// Parity tolerance: max|ours − reference| ≤ 1e-4 × max(1, RMS(reference)), float32.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "alloc_counter.hpp"  // this binary's one counting allocation hook
#include "support.hpp"

using namespace ssm;
using namespace ssm::test;
namespace fs = std::filesystem;

namespace {

const fs::path kGolden = fs::path(SSM_SOURCE_DIR) / "tests" / "golden" / "lti_a";

struct Family {
    const char* name;        // file prefix: <name>_*.io.safetensors
    const char* small_case;  // a small model for the long stream == batch runs
    const char* layer;       // a layer name in small_case
    const char* tensor;      // one of its tensors (removed / reshaped by the importer tests)
};

const Family kFamilies[] = {
    {"lru", "lru_layer", "lru", "lru.B_re"},
    {"s5", "s5_layer_zoh", "s5", "s5.B"},
    {"dss", "dss_layer_softmax_maxlen", "dss", "dss.kernel.Lambda"},
    {"ema", "ema_trunc", "ema", "ema.gamma"},
};

std::vector<std::string> cases_of(const std::string& family) {
    std::vector<std::string> out;
    if (!fs::exists(kGolden)) return out;
    for (const auto& e : fs::directory_iterator(kGolden)) {
        const auto n = e.path().filename().string();
        const std::string suffix = ".io.safetensors";
        if (n.starts_with(family + "_") && n.ends_with(suffix)) out.push_back(n.substr(0, n.size() - suffix.size()));
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::shared_ptr<const Model> load_case(const std::string& c) { return Model::load(kGolden / (c + ".model.safetensors")); }

std::vector<float> run_batch(const std::shared_ptr<const Model>& m, const std::vector<float>& in, std::size_t threads,
                             std::size_t chunk = 1 << 15, std::size_t piece = 0) {
    BatchOptions o;
    o.threads = threads;
    o.chunk_frames = chunk;
    return run_batch_with(m, in, o, piece);
}

/** The model file's metadata and tensors, to be altered and re-encoded. */
struct Checkpoint {
    std::map<std::string, std::string> meta;
    std::vector<TensorData> tensors;
    std::vector<std::byte> bytes() const { return encode_safetensors(meta, tensors); }
};

Checkpoint read_checkpoint(const fs::path& p) {
    const auto f = TensorFile::open(p);
    Checkpoint c;
    c.meta = f.metadata();
    for (const auto& t : f.tensors()) c.tensors.push_back({t.name, t.shape, TensorFile::to_double(t), DType::F32});
    return c;
}

std::string load_error(const Checkpoint& c) {
    try {
        const auto bytes = c.bytes();
        Model::from_tensor_file(TensorFile::from_bytes(bytes, "ckpt"));
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST(LtiAGolden, EveryCaseMatchesItsReference) {
    for (const auto& fam : kFamilies) {
        const auto cases = cases_of(fam.name);
        ASSERT_GE(cases.size(), 2u) << fam.name << ": golden files missing from " << kGolden
                                    << " (run tests/golden/make_" << fam.name << "_golden.py)";
        for (const auto& c : cases) {
            SCOPED_TRACE(c);
            const auto model = load_case(c);
            const auto io = TensorFile::open(kGolden / (c + ".io.safetensors"));
            const auto* tin = io.find("input");
            const auto* tout = io.find("output");
            ASSERT_TRUE(tin && tout);
            ASSERT_EQ(static_cast<std::size_t>(tin->shape[1]), model->info().in_channels);
            ASSERT_EQ(static_cast<std::size_t>(tout->shape[1]), model->info().out_channels);
            const auto in = TensorFile::to_float(*tin);
            const auto ref = TensorFile::to_float(*tout);
            const double scale = std::max(1.0, rms(ref)), tol = 1e-4 * scale;
            for (std::size_t block : {1u, 64u, 1000u}) {
                const double err = max_abs_diff(ref, run_stream(model, in, block));
                EXPECT_LE(err, tol) << "stream block " << block;
                if (block == 64) std::printf("[parity] %s stream: max|err|/max(1,rms) = %.2e\n", c.c_str(), err / scale);
            }
            for (std::size_t threads : {1u, 2u, 4u}) {
                const double err = max_abs_diff(ref, run_batch(model, in, threads, 1 << 15));
                EXPECT_LE(err, tol) << "batch threads " << threads;
                EXPECT_LE(max_abs_diff(ref, run_batch(model, in, threads, 100, 37)), tol) << "batch pieces, threads " << threads;
            }
            if (const auto* t64 = io.find("output_f64")) {
                const auto ref64 = TensorFile::to_double(*t64);
                const auto out = run_stream(model, in, 64);
                double m = 0;
                for (std::size_t i = 0; i < out.size(); ++i) m = std::max(m, std::abs(out[i] - ref64[i]));
                EXPECT_LE(m, tol) << "vs float64 reference";
                std::printf("[parity] %s vs reference float64: %.2e\n", c.c_str(), m / scale);
            }
        }
    }
}

TEST(LtiAStream, EveryBlockSizeIsBitIdenticalToStepping) {
    for (const auto& fam : kFamilies)
        for (const auto& c : cases_of(fam.name)) {
            SCOPED_TRACE(c);
            const auto model = load_case(c);
            const auto in = random_signal(700, model->info().in_channels, 3);
            const auto ref = run_stream(model, in, 1);
            for (std::size_t block : {2u, 7u, 64u, 700u}) EXPECT_EQ(max_abs_diff(ref, run_stream(model, in, block)), 0.0) << block;
        }
}

// ≥ 10⁶ samples (frames × channels) through the small model of each family: batch (every thread count, chunk edges,
// odd pieces) equals streaming within 1e-4 × RMS.
TEST(LtiAStreamVsBatch, AMillionSamples) {
    for (const auto& fam : kFamilies) {
        SCOPED_TRACE(fam.name);
        const auto model = load_case(fam.small_case);
        const std::size_t ch = model->info().in_channels, frames = (1000000 + ch - 1) / ch;
        const auto in = random_signal(frames, ch, 11);
        const auto ref = run_stream(model, in, 256);
        const double tol = 1e-4 * std::max(rms(ref), 1e-3);
        for (std::size_t threads : {1u, 2u, 3u}) {
            const double err = max_abs_diff(ref, run_batch(model, in, threads));
            EXPECT_LE(err, tol) << "threads " << threads;
            std::printf("[stream-vs-batch] %s %zu frames x %zu ch, threads %zu: max|err|/rms = %.2e\n", fam.small_case,
                        frames, ch, threads, err / std::max(rms(ref), 1e-3));
        }
        EXPECT_LE(max_abs_diff(ref, run_batch(model, in, 2, 5000, 7777)), tol) << "chunk 5000, pieces 7777";
    }
}

TEST(LtiAState, SaveLoadCarriesASignalAcrossStreamAndBatch) {
    for (const auto& fam : kFamilies) {
        SCOPED_TRACE(fam.name);
        const auto model = load_case(fam.small_case);
        const std::size_t ch = model->info().in_channels, half = 3000;
        const auto in = random_signal(2 * half, ch, 5);
        const auto ref = run_stream(model, in, 128);
        const double tol = 1e-4 * std::max(rms(ref), 1e-3);
        std::vector<float> out(in.size());
        // stream the first half, hand the state to a batch for the second half
        Stream s(model);
        s.prepare({0, half, 0});
        s.process(in.data(), out.data(), half);
        std::vector<std::byte> snap(s.state_bytes());
        s.save_state(snap);
        BatchOptions o;
        o.threads = 2;
        Batch b(model, o);
        b.load_state(snap);
        b.process(in.data() + half * ch, out.data() + half * ch, half);
        EXPECT_LE(max_abs_diff(ref, out), tol) << "stream then batch";
        // and back: batch the first half, stream the rest
        Batch b2(model, o);
        b2.process(in.data(), out.data(), half);
        std::vector<std::byte> snap2(b2.state_bytes());
        b2.save_state(snap2);
        Stream s2(model);
        s2.prepare({0, half, 0});
        s2.load_state(snap2);
        s2.process(in.data() + half * ch, out.data() + half * ch, half);
        EXPECT_LE(max_abs_diff(ref, out), tol) << "batch then stream";
        // reset gives a fresh stream
        s.reset();
        std::vector<float> again(half * ch);
        s.process(in.data(), again.data(), half);
        EXPECT_EQ(max_abs_diff(std::vector<float>(ref.begin(), ref.begin() + static_cast<long>(half * ch)), again), 0.0);
    }
}

TEST(LtiARealtime, ProcessDoesNotAllocate) {
    for (const auto& fam : kFamilies)
        for (const auto& c : cases_of(fam.name)) {
            SCOPED_TRACE(c);
            const auto model = load_case(c);
            Stream s(model);
            s.prepare({0, 256, 0});
            const auto in = random_signal(256, model->info().in_channels, 2);
            std::vector<float> out(256 * model->info().out_channels);
            counting = true;
            allocations = 0;
            for (std::size_t f : {1u, 17u, 256u}) s.process(in.data(), out.data(), f);
            counting = false;
            EXPECT_EQ(allocations.load(), 0);
        }
}

TEST(LtiAImport, RefusesMissingSurplusAndMisShapedTensors) {
    for (const auto& fam : kFamilies) {
        SCOPED_TRACE(fam.name);
        const auto base = read_checkpoint(kGolden / (std::string(fam.small_case) + ".model.safetensors"));
        ASSERT_EQ(load_error(base), "");
        auto find = [](Checkpoint& c, const std::string& n) {
            return std::find_if(c.tensors.begin(), c.tensors.end(), [&](const TensorData& t) { return t.name == n; });
        };
        {
            auto c = base;
            c.tensors.erase(find(c, fam.tensor));
            const auto e = load_error(c);
            EXPECT_NE(e.find(fam.tensor), std::string::npos) << e;
            EXPECT_NE(e.find("missing"), std::string::npos) << e;
        }
        {
            auto c = base;
            const std::string extra = std::string(fam.layer) + ".not_in_the_reference";
            c.tensors.push_back({extra, {2}, {1.0, 2.0}, DType::F32});
            const auto e = load_error(c);
            EXPECT_NE(e.find(extra), std::string::npos) << e;
        }
        {
            auto c = base;
            auto it = find(c, fam.tensor);
            it->values.resize(it->values.size() - it->values.size() / it->shape[0]);
            it->shape[0] -= 1;
            const auto e = load_error(c);
            EXPECT_NE(e.find(fam.tensor), std::string::npos) << e;
            EXPECT_NE(e.find("shape"), std::string::npos) << e;
        }
    }
}

// Variants that cannot stream are refused at load with a message naming the cause, never run wrongly.
TEST(LtiAConfig, RefusesWhatCannotStream) {
    auto edit = [](const std::string& c, const std::function<void(nlohmann::json&)>& f) {
        auto ck = read_checkpoint(kGolden / (c + ".model.safetensors"));
        auto cfg = nlohmann::json::parse(ck.meta.at("ssmstream"));
        f(cfg["layers"][0]);
        ck.meta["ssmstream"] = cfg.dump();
        return load_error(ck);
    };
    auto tensor = [](const std::string& c, const std::string& name, std::size_t i, double v) {
        auto ck = read_checkpoint(kGolden / (c + ".model.safetensors"));
        for (auto& t : ck.tensors)
            if (t.name == name) t.values[i] = v;
        return load_error(ck);
    };
    EXPECT_NE(edit("s5_layer_zoh", [](auto& l) { l["bidirectional"] = true; }).find("bidirectional"), std::string::npos);
    EXPECT_NE(edit("ema_layer", [](auto& l) { l["bidirectional"] = true; }).find("bidirectional"), std::string::npos);
    EXPECT_NE(edit("dss_layer_softmax", [](auto& l) { l.erase("kernel_length"); }).find("kernel_length"), std::string::npos);
    EXPECT_NE(edit("s5_layer_zoh", [](auto& l) { l["discretization"] = "euler"; }).find("euler"), std::string::npos);
    EXPECT_NE(edit("lru_layer", [](auto& l) { l["activation"] = "full_glu"; }).find("dense_prefix"), std::string::npos);
    EXPECT_NE(edit("lru_layer", [](auto& l) { l["r_min"] = 0.5; }).find("r_min"), std::string::npos);
    // a state that grows: S5 with Re Λ > 0 (refused unless clip_eigs), DSS with Re Λ > 0
    EXPECT_NE(tensor("s5_layer_zoh", "s5.Lambda_re", 3, 0.5).find("state 3"), std::string::npos);
    EXPECT_NE(tensor("dss_layer_softmax", "dss.kernel.Lambda", 2 * 5, 0.5).find("state 5"), std::string::npos);
    auto ck = read_checkpoint(kGolden / "s5_layer_zoh.model.safetensors");
    for (auto& t : ck.tensors)
        if (t.name == "s5.Lambda_re") t.values[3] = 0.5;
    auto cfg = nlohmann::json::parse(ck.meta.at("ssmstream"));
    cfg["layers"][0]["clip_eigs"] = true;
    ck.meta["ssmstream"] = cfg.dump();
    EXPECT_EQ(load_error(ck), "") << "clip_eigs makes the same file stable";
}
