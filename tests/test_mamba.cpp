// Mamba, Mamba-2 and FalconMamba: parity with transformers (golden checkpoints in tests/golden, written by
// make_mamba_golden.py), streaming == batch in every block size and chunking, state carried across views, and the
// checkpoint importer's checks.
#include <gtest/gtest.h>

#include <fstream>
#include <cstring>
#include <functional>
#include <iterator>

#include "mamba_support.hpp"

using namespace ssm;
using namespace ssm::test;
namespace fs = std::filesystem;

namespace {

// The project's tolerance: max |a − b| ≤ 1e-4 × max(RMS of the reference, 1e-3).
double tol_of(const std::vector<float>& ref) { return 1e-4 * std::max(rms(ref), 1e-3); }

std::vector<float> run_batch(const std::shared_ptr<const Model>& m, const std::vector<float>& in, std::size_t chunk = 1 << 15,
                             std::size_t piece = 0, std::size_t threads = 0, Backend backend = Backend::automatic) {
    BatchOptions o;
    o.chunk_frames = chunk;
    o.threads = threads;
    o.backend = backend;
    return run_batch_with(m, in, o, piece);
}

struct Golden {
    std::vector<float> tokens, logits, logits_step;
    std::vector<double> logits_f64;
};

Golden read_io(const std::string& name) {
    const auto f = TensorFile::open(golden_dir() / (name + ".io.safetensors"));
    Golden g;
    g.tokens = TensorFile::to_float(*f.find("tokens"));
    g.logits = TensorFile::to_float(*f.find("logits"));
    g.logits_step = TensorFile::to_float(*f.find("logits_step"));
    g.logits_f64 = TensorFile::to_double(*f.find("logits_f64"));
    return g;
}

double max_diff64(const std::vector<float>& a, const std::vector<double>& b) {
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
    return m;
}

const char* kCases[] = {"mamba_tiny", "mamba_bias", "mamba_sharded", "mamba2_tiny", "mamba2_limit", "falcon_mamba_tiny", "mambassm_tiny"};

}  // namespace

TEST(MambaGolden, WholeSequenceAndTokenByTokenMatchTransformers) {
    for (const char* name : kCases) {
        SCOPED_TRACE(name);
        const auto m = load_model(golden_dir() / name);
        const auto g = read_io(name);
        ASSERT_EQ(m->info().in_channels, 1u);
        ASSERT_EQ(g.logits.size(), g.tokens.size() * m->info().out_channels);
        const double tol = tol_of(g.logits);
        const auto batch = run_batch(m, g.tokens);
        const auto step = run_stream(m, g.tokens, 1);
        const auto blocks = run_stream(m, g.tokens, 5);
        EXPECT_LE(max_abs_diff(batch, g.logits), tol) << "batch vs transformers float32";
        EXPECT_LE(max_diff64(batch, g.logits_f64), tol) << "batch vs transformers float64";
        // Mamba-2's two batch scans (SSD, forced by the parallel view, and the recurrence), whichever auto took
        for (Backend b : {Backend::fft, Backend::recurrence})
            EXPECT_LE(max_diff64(run_batch(m, g.tokens, 1 << 15, 0, 0, b), g.logits_f64), tol) << "batch backend " << int(b);
        EXPECT_LE(max_diff64(step, g.logits_f64), tol) << "token by token vs transformers float64";
        EXPECT_LE(max_diff64(blocks, g.logits_f64), tol) << "blocks of 5 vs transformers float64";
        // transformers' Mamba-2 cache step does not clamp dt to time_step_limit (its whole-sequence path does, as
        // mamba_ssm's chunked forward does); we clamp in both views, so mamba2_limit's step golden is not ours.
        if (std::string(name) != "mamba2_limit") {
            EXPECT_LE(max_abs_diff(step, g.logits_step), tol) << "token by token vs transformers' cache step";
        }
        EXPECT_LE(max_abs_diff(step, batch), tol) << "stream vs batch";
        std::printf("[ parity ] %-18s batch-f64 %.2e  step-f64 %.2e  (tol %.2e, logits rms %.3f)\n", name,
                    max_diff64(batch, g.logits_f64), max_diff64(step, g.logits_f64), tol, rms(g.logits));
    }
}

TEST(MambaGolden, ShardedCheckpointEqualsItsOwnLogitsAndSsmSaveEqualsHf) {
    // mambassm_tiny holds mamba_tiny's weights in mamba_ssm's layout (vocabulary 60 padded to 64).
    const auto a = load_model(golden_dir() / "mamba_tiny");
    const auto b = load_model(golden_dir() / "mambassm_tiny");
    const auto g = read_io("mamba_tiny");
    const auto ya = run_batch(a, g.tokens), yb = run_batch(b, g.tokens);
    ASSERT_EQ(ya.size(), yb.size());
    const std::size_t V = a->info().out_channels;
    for (std::size_t t = 0; t < g.tokens.size(); ++t)
        for (std::size_t v = 0; v < 60; ++v) EXPECT_EQ(ya[t * V + v], yb[t * V + v]);
}

TEST(MambaGolden, InfoShowsTheArchitecture) {
    const auto m = load_model(golden_dir() / "mamba2_tiny");
    EXPECT_NE(m->info().description.find("Mamba2ForCausalLM (transformers)"), std::string::npos) << m->info().description;
    bool found = false;
    for (const auto& l : m->info().layers) found |= l.find("mamba2 'backbone.layers.1.mixer'") != std::string::npos;
    EXPECT_TRUE(found);
    const auto f = load_model(golden_dir() / "falcon_mamba_tiny");
    found = false;
    for (const auto& l : f->info().layers) found |= l.find("falcon-mamba") != std::string::npos;
    EXPECT_TRUE(found);
}

TEST(MambaStreamBatch, SignalModelsAgreeInEveryBlockSizeChunkAndThreadCount) {
    for (const char* family : {"mamba", "mamba2"}) {
        for (bool falcon : {false, true}) {
            if (falcon && std::string(family) == "mamba2") continue;
            MambaSignalSpec spec;
            spec.family = family;
            spec.falcon = falcon;
            const auto m = make_mamba_signal_model(spec);
            for (std::size_t len : {1u, 2u, 7u, 33u, 1000u, 5000u}) {
                SCOPED_TRACE(std::string(family) + (falcon ? " falcon" : "") + " len " + std::to_string(len));
                const auto in = random_signal(len, spec.d_in, static_cast<std::uint32_t>(len));
                const auto ref = run_stream(m, in, 1);
                const double tol = tol_of(ref);
                for (std::size_t block : {3u, 64u, 512u}) EXPECT_LE(max_abs_diff(ref, run_stream(m, in, block)), tol) << "block " << block;
                for (Backend b : {Backend::automatic, Backend::fft, Backend::recurrence}) {
                    SCOPED_TRACE("backend " + std::to_string(static_cast<int>(b)));
                    EXPECT_LE(max_abs_diff(ref, run_batch(m, in, 1 << 15, 0, 0, b)), tol) << "batch";
                    EXPECT_LE(max_abs_diff(ref, run_batch(m, in, 100, 333, 0, b)), tol) << "batch chunk 100 pieces 333";
                    EXPECT_LE(max_abs_diff(ref, run_batch(m, in, 4096, 0, 1, b)), tol) << "batch 1 thread";
                    EXPECT_LE(max_abs_diff(ref, run_batch(m, in, 4096, 0, 3, b)), tol) << "batch 3 threads";
                }
            }
        }
    }
}

TEST(MambaStreamBatch, StateCarriesAcrossViews) {
    for (const char* family : {"mamba", "mamba2"})
      for (Backend bk : {Backend::fft, Backend::recurrence}) {
        SCOPED_TRACE(std::string(family) + " backend " + std::to_string(static_cast<int>(bk)));
        MambaSignalSpec spec;
        spec.family = family;
        const auto m = make_mamba_signal_model(spec);
        const std::size_t n = 3000, half = 1234, cin = spec.d_in, cout = spec.d_out;
        const auto in = random_signal(n, cin, 5);
        const auto ref = run_stream(m, in, 64);
        // stream the first part, hand the state to a Batch for the rest
        Stream s(m);
        s.prepare({0, 64, 0});
        std::vector<float> out(n * cout);
        for (std::size_t t = 0; t < half; t += 64) s.process(in.data() + t * cin, out.data() + t * cout, std::min<std::size_t>(64, half - t));
        std::vector<std::byte> snap(s.state_bytes());
        s.save_state(snap);
        BatchOptions bo;
        bo.backend = bk;
        Batch b(m, bo);
        if (std::string(family) == "mamba2") {
            std::size_t scans = 0;
            for (const auto& p : b.plan())
                if (p.layer.rfind("mamba2", 0) == 0) {
                    EXPECT_EQ(p.backend, bk == Backend::fft ? "ssd" : "recurrence") << p.reason;
                    ++scans;
                }
            EXPECT_GT(scans, 0u);
        }
        b.load_state(snap);
        b.process(in.data() + half * cin, out.data() + half * cout, n - half);
        EXPECT_LE(max_abs_diff(ref, out), tol_of(ref));
        // and back: batch state into a fresh stream
        std::vector<std::byte> snap2(b.state_bytes());
        b.save_state(snap2);
        Stream s2(m);
        s2.prepare({0, 64, 0});
        s2.load_state(snap2);
        const auto more = random_signal(100, cin, 9);
        std::vector<float> y1(100 * cout), y2(100 * cout);
        s2.process(more.data(), y1.data(), 100);
        b.process(more.data(), y2.data(), 100);
        EXPECT_LE(max_abs_diff(y1, y2), tol_of(y1));
    }
}

// ---- the importer's checks: a copy of a golden checkpoint, broken one way at a time ----

namespace {

fs::path copy_case(const std::string& name, const std::string& as) {
    const auto d = temp_dir() / as;
    fs::remove_all(d);
    fs::copy(golden_dir() / name, d, fs::copy_options::recursive);
    return d;
}

void edit_config(const fs::path& d, const std::function<void(nlohmann::json&)>& f) {
    nlohmann::json c;
    {
        std::ifstream in(d / "config.json");
        in >> c;
    }
    f(c);
    std::ofstream(d / "config.json") << c.dump(2);
}

// Rewrites model.safetensors with `f` applied to its tensors.
void edit_tensors(const fs::path& d, const std::function<void(std::vector<TensorData>&)>& f) {
    std::vector<TensorData> ts;
    {
        const auto file = TensorFile::open(d / "model.safetensors");
        for (const auto& t : file.tensors()) ts.push_back({t.name, t.shape, TensorFile::to_double(t), t.dtype});
    }
    f(ts);
    write_safetensors(d / "model.safetensors", {{"format", "pt"}}, ts);
}

std::string load_error(const fs::path& d) {
    try {
        load_model(d);
    } catch (const Error& e) {
        return e.what();
    }
    return "(loaded)";
}

}  // namespace

TEST(MambaCheckpoint, MalformedCheckpointsAreRejectedNamingTheFault) {
    auto d = copy_case("mamba_tiny", "bad_field");
    edit_config(d, [](auto& c) { c["use_fancy_scan"] = true; });
    EXPECT_NE(load_error(d).find("unknown config.json field \"use_fancy_scan\""), std::string::npos) << load_error(d);

    d = copy_case("mamba_tiny", "bad_act");
    edit_config(d, [](auto& c) { c["hidden_act"] = "gelu"; });
    EXPECT_NE(load_error(d).find("hidden_act 'gelu'"), std::string::npos) << load_error(d);

    d = copy_case("mamba_tiny", "bad_type");
    edit_config(d, [](auto& c) { c["model_type"] = "jamba"; });
    EXPECT_NE(load_error(d).find("model_type 'jamba'"), std::string::npos) << load_error(d);

    d = copy_case("mamba_tiny", "bad_inter");
    edit_config(d, [](auto& c) { c["intermediate_size"] = 30; });
    EXPECT_NE(load_error(d).find("intermediate_size"), std::string::npos) << load_error(d);

    d = copy_case("mamba_tiny", "bad_shape");
    edit_tensors(d, [](auto& ts) {
        for (auto& t : ts)
            if (t.name == "backbone.layers.1.mixer.A_log") {
                t.shape = {32, 4};
                t.values.resize(128);
            }
    });
    EXPECT_NE(load_error(d).find("tensor 'backbone.layers.1.mixer.A_log': shape [32, 4], expected [32, 8]"), std::string::npos) << load_error(d);

    d = copy_case("mamba_tiny", "missing");
    edit_tensors(d, [](auto& ts) { std::erase_if(ts, [](const TensorData& t) { return t.name == "backbone.layers.0.mixer.dt_proj.bias"; }); });
    EXPECT_NE(load_error(d).find("missing tensor 'backbone.layers.0.mixer.dt_proj.bias'"), std::string::npos) << load_error(d);

    d = copy_case("mamba_tiny", "surplus");
    edit_tensors(d, [](auto& ts) { ts.push_back({"backbone.layers.0.mixer.extra", {2}, {1.0, 2.0}, DType::F32}); });
    EXPECT_NE(load_error(d).find("tensor 'backbone.layers.0.mixer.extra' is not used"), std::string::npos) << load_error(d);

    d = copy_case("mamba_tiny", "nan");
    edit_tensors(d, [](auto& ts) {
        for (auto& t : ts)
            if (t.name == "backbone.norm_f.weight") t.values[3] = std::nan("");
    });
    EXPECT_NE(load_error(d).find("tensor 'backbone.norm_f.weight': holds NaN or Inf"), std::string::npos) << load_error(d);

    d = copy_case("mamba_bias", "untied_no_head");
    edit_tensors(d, [](auto& ts) { std::erase_if(ts, [](const TensorData& t) { return t.name == "lm_head.weight"; }); });
    EXPECT_NE(load_error(d).find("missing tensor 'lm_head.weight'"), std::string::npos) << load_error(d);

    d = copy_case("mamba_sharded", "bad_index");
    fs::remove(d / "model-00003-of-00006.safetensors");
    EXPECT_NE(load_error(d).find("model-00003-of-00006.safetensors"), std::string::npos) << load_error(d);

    d = copy_case("mamba2_tiny", "bad_heads");
    edit_config(d, [](auto& c) { c["num_heads"] = 3; });
    EXPECT_NE(load_error(d).find("num_heads * head_dim"), std::string::npos) << load_error(d);

    d = copy_case("mambassm_tiny", "ssm_mlp");
    edit_config(d, [](auto& c) { c["d_intermediate"] = 64; });
    EXPECT_NE(load_error(d).find("d_intermediate"), std::string::npos) << load_error(d);

    d = temp_dir() / "empty_ckpt";
    fs::create_directories(d);
    std::ofstream(d / "config.json") << "{\"model_type\": \"mamba\"";
    EXPECT_NE(load_error(d).find("not valid JSON"), std::string::npos) << load_error(d);
}

TEST(MambaCheckpoint, ConvertedNativeFileIsTheSameModel) {
    const auto ck = import_checkpoint(golden_dir() / "mamba2_tiny");
    const auto path = temp_dir() / "mamba2_tiny.safetensors";
    const auto bytes = encode_native(ck);
    write_file_atomically(path, bytes);
    const auto a = Model::load(path);
    const auto b = load_model(golden_dir() / "mamba2_tiny");
    const auto g = read_io("mamba2_tiny");
    EXPECT_EQ(max_abs_diff(run_batch(a, g.tokens), run_batch(b, g.tokens)), 0.0);
}

// ---- the command line: ssm info DIR, ssm run DIR tokens.npy logits.npy, ssm convert DIR OUT ----

namespace {

void write_int64_npy(const fs::path& p, const std::vector<std::int64_t>& v) {
    std::string dict = "{'descr': '<i8', 'fortran_order': False, 'shape': (" + std::to_string(v.size()) + ",), }";
    dict.append((64 - (10 + dict.size() + 1) % 64) % 64, ' ');
    dict += '\n';
    std::ofstream f(p, std::ios::binary);
    const unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<unsigned char>(dict.size() & 0xff),
                                   static_cast<unsigned char>(dict.size() >> 8)};
    f.write(reinterpret_cast<const char*>(pre), 10);
    f.write(dict.data(), static_cast<std::streamsize>(dict.size()));
    f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 8));
}

std::vector<float> read_f32_npy(const fs::path& p, std::size_t count) {
    std::ifstream f(p, std::ios::binary);
    std::vector<char> all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<float> out(count);
    if (all.size() < count * 4) return {};
    std::memcpy(out.data(), all.data() + all.size() - count * 4, count * 4);
    return out;
}

int sh(const std::string& cmd) { return std::system((cmd + " > /dev/null 2>&1").c_str()); }

}  // namespace

TEST(MambaCli, RunInfoAndConvertACheckpointDirectory) {
    const std::string cli = SSM_CLI;
    if (cli.empty()) GTEST_SKIP() << "the ssm CLI is not built (SSM_APPS=OFF)";
    for (const char* name : {"mamba_bias", "mamba2_tiny", "falcon_mamba_tiny"}) {
        SCOPED_TRACE(name);
        const auto g = read_io(name);
        std::vector<std::int64_t> tok(g.tokens.begin(), g.tokens.end());
        const auto tp = temp_dir() / (std::string(name) + "_tokens.npy"), lp = temp_dir() / (std::string(name) + "_logits.npy");
        write_int64_npy(tp, tok);
        const auto dir = (golden_dir() / name).string();
        ASSERT_EQ(sh(cli + " info " + dir), 0);
        for (const char* backend : {"auto", "stream"}) {
            fs::remove(lp);
            ASSERT_EQ(sh(cli + " run " + dir + " " + tp.string() + " " + lp.string() + " --backend " + backend + " --block 3"), 0) << backend;
            const auto y = read_f32_npy(lp, g.logits.size());
            EXPECT_LE(max_abs_diff(y, g.logits), tol_of(g.logits)) << backend;
        }
        const auto native = temp_dir() / (std::string(name) + ".safetensors");
        ASSERT_EQ(sh(cli + " convert " + dir + " " + native.string()), 0);
        fs::remove(lp);
        ASSERT_EQ(sh(cli + " run " + native.string() + " " + tp.string() + " " + lp.string()), 0);
        EXPECT_LE(max_abs_diff(read_f32_npy(lp, g.logits.size()), g.logits), tol_of(g.logits));
    }
    // token ids outside the vocabulary: an error, and no output file
    const auto bad = temp_dir() / "bad_tokens.npy", out = temp_dir() / "never.npy";
    write_int64_npy(bad, {1, 2, 64});
    EXPECT_NE(sh(cli + " run " + (golden_dir() / "mamba_tiny").string() + " " + bad.string() + " " + out.string()), 0);
    EXPECT_FALSE(fs::exists(out));
}

// ---- signal models trained with models/train/ssmtrain/mamba.py and exported to the native file ----

TEST(MambaGolden, SsmtrainExportedSignalModelsMatchTheirPyTorchModule) {
    for (const char* name : {"signal_mamba", "signal_mamba2"}) {
        SCOPED_TRACE(name);
        const auto m = Model::load(golden_dir() / (std::string(name) + ".model.safetensors"));
        const auto io = TensorFile::open(golden_dir() / (std::string(name) + ".io.safetensors"));
        const auto in = TensorFile::to_float(*io.find("input"));
        const auto ref = TensorFile::to_double(*io.find("output_f64"));
        std::vector<float> reff(ref.begin(), ref.end());
        const double tol = tol_of(reff);
        const auto s = run_stream(m, in, 1), b = run_batch(m, in), b2 = run_batch(m, in, 50, 77);
        EXPECT_LE(max_diff64(s, ref), tol) << "stream";
        EXPECT_LE(max_diff64(b, ref), tol) << "batch";
        EXPECT_LE(max_diff64(b2, ref), tol) << "batch in chunks";
        std::printf("[ parity ] %-18s stream-f64 %.2e  batch-f64 %.2e  (tol %.2e)\n", name, max_diff64(s, ref), max_diff64(b, ref), tol);
    }
}

// ---- BF16 checkpoints: the big matrices stay BF16 in memory (half the bytes a token step reads) ----

namespace {
// The checkpoint with every matrix stored as BF16, and the same (BF16-rounded) values stored as F32.
std::pair<fs::path, fs::path> bf16_and_f32_twins(const std::string& name) {
    auto ck = import_checkpoint(golden_dir() / name);
    for (auto& t : ck.tensors)
        if (t.shape.size() >= 2) t.dtype = DType::BF16;
    const auto bf = temp_dir() / (name + "_bf16.safetensors");
    write_file_atomically(bf, encode_native(ck));
    const auto file = TensorFile::open(bf);
    for (auto& t : ck.tensors) {
        t.values = TensorFile::to_double(*file.find(t.name));  // exactly the BF16 values
        t.dtype = DType::F32;
    }
    const auto f32 = temp_dir() / (name + "_bf16_as_f32.safetensors");
    write_file_atomically(f32, encode_native(ck));
    return {bf, f32};
}
}  // namespace

TEST(MambaBf16, MatricesStayBf16AndGiveTheSameLogitsAsTheirF32Widening) {
    for (const char* name : {"mamba_tiny", "mamba2_tiny", "falcon_mamba_tiny"}) {
        SCOPED_TRACE(name);
        const auto [bf_path, f32_path] = bf16_and_f32_twins(name);
        const auto bf = Model::load(bf_path), f32 = Model::load(f32_path);
        // Same maths, half the memory for the matrices (norms, conv, A, D, x/dt projections stay float32).
        EXPECT_EQ(bf->info().parameters, f32->info().parameters);
        EXPECT_EQ(f32->info().weight_bytes, f32->info().parameters * 4);
        EXPECT_LT(bf->info().weight_bytes, f32->info().weight_bytes * 3 / 4);  // tiny configs: x/dt projections weigh more
        const auto g = read_io(name);
        const auto y_bf = run_batch(bf, g.tokens), y_f32 = run_batch(f32, g.tokens);
        const double tol = 1e-5 * std::max(1.0, rms(y_f32));  // only the order of the sums differs
        EXPECT_LE(max_abs_diff(y_bf, y_f32), tol) << "batch";
        EXPECT_LE(max_abs_diff(run_stream(bf, g.tokens, 1), y_f32), tol) << "token by token";
        EXPECT_LE(max_abs_diff(run_stream(bf, g.tokens, 5), y_f32), tol) << "blocks of 5";
        // Rounding to BF16 moved the weights: the BF16 path is not secretly reading the golden F32 values.
        EXPECT_GT(max_abs_diff(y_f32, run_batch(load_model(golden_dir() / name), g.tokens)), 1e-4);
    }
}
