// ssm-monitor's pure parts: the wire protocol (well-formed and malformed input), the WFDB reader (against the
// PhysioNet `wfdb` package), the recording format (including a crash-torn tail), chain specs, the QRS detector
// and the signal-quality index, the allocation-free promise of the per-frame path, and the TLS set-up (what the
// server accepts as certificate and key, what a handshake checks, and that TLS adds no allocation per frame).
#include <gtest/gtest.h>

#include <utility>  // before Boost.Asio 1.74 (its awaitable.hpp uses std::exchange)
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>

#include "alloc_counter.hpp"
#include "chain.hpp"
#include "protocol.hpp"
#include "qrs.hpp"
#include "recording.hpp"
#include "ssmstream/ssmstream.hpp"
#include "tls.hpp"
#include "wfdb.hpp"

using namespace ssm::monitor;
namespace fs = std::filesystem;

namespace {

fs::path tmpdir(const std::string& name) {
    const auto d = fs::temp_directory_path() / ("ssm_monitor_test_" + std::to_string(::getpid())) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

Hello sample_hello(std::size_t ch = 3) {
    Hello h;
    h.stream_id = "dev-1.a_b";
    h.token = "secret";
    h.sample_rate = 360;
    for (std::size_t c = 0; c < ch; ++c) {
        h.names.push_back("ch" + std::to_string(c));
        h.units.push_back("mV");
    }
    return h;
}

std::span<const std::byte> payload_of(const std::vector<std::byte>& frame) {
    return std::span<const std::byte>(frame).subspan(kHeaderBytes);
}

fs::path wfdb_dir() {
    const fs::path p = fs::path(SSM_SHARED_DATA) / "wfdb-records";
    return fs::exists(p / "100.hea") ? p : fs::path();
}

}  // namespace

TEST(MonitorProtocol, HelloRoundTrip) {
    const Hello h = sample_hello(3);
    std::vector<std::byte> f;
    encode_hello(h, f);
    Header hd;
    ASSERT_TRUE(parse_header(f, hd));
    EXPECT_EQ(hd.type, Type::hello);
    EXPECT_EQ(hd.payload_bytes, f.size() - kHeaderBytes);
    Hello g;
    const auto st = parse_hello(payload_of(f), g);
    ASSERT_TRUE(st) << st.error;
    EXPECT_EQ(g.stream_id, h.stream_id);
    EXPECT_EQ(g.token, h.token);
    EXPECT_EQ(g.sample_rate, 360);
    EXPECT_EQ(g.names, h.names);
    EXPECT_EQ(g.units, h.units);
}

TEST(MonitorProtocol, DataRoundTripAndWrongChannelCount) {
    std::vector<float> x(5 * 3);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i) - 1;
    x[4] = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::byte> f;
    encode_data(1234, -77, x, 3, f);
    Header hd;
    ASSERT_TRUE(parse_header(f, hd));
    EXPECT_EQ(hd.type, Type::data);
    DataView d;
    ASSERT_TRUE(parse_data(payload_of(f), 3, d));
    EXPECT_EQ(d.seq, 1234u);
    EXPECT_EQ(d.device_time_ns, -77);
    EXPECT_EQ(d.frames, 5u);
    for (std::size_t i = 0; i < x.size(); ++i) {
        if (i == 4) EXPECT_TRUE(std::isnan(sample_at(d, i)));
        else EXPECT_EQ(sample_at(d, i), x[i]);
    }
    // The same bytes for a 2- or 4-channel stream are refused, naming the likely cause.
    const auto st2 = parse_data(payload_of(f), 2, d);
    EXPECT_FALSE(st2);
    EXPECT_NE(st2.error.find("wrong channel count"), std::string::npos) << st2.error;
    EXPECT_FALSE(parse_data(payload_of(f), 4, d));
    EXPECT_FALSE(parse_data(payload_of(f), 0, d));
}

TEST(MonitorProtocol, HeaderFaults) {
    std::vector<std::byte> f;
    encode_bye(f);
    Header h;
    ASSERT_TRUE(parse_header(f, h));
    EXPECT_FALSE(parse_header(std::span(f).first(7), h));  // truncated
    auto bad = f;
    bad[0] = std::byte{'G'};
    EXPECT_NE(parse_header(bad, h).error.find("magic"), std::string::npos);
    bad = f;
    bad[2] = std::byte{2};
    EXPECT_NE(parse_header(bad, h).error.find("version"), std::string::npos);
    for (int t : {0, 6, 255}) {
        bad = f;
        bad[3] = static_cast<std::byte>(t);
        EXPECT_FALSE(parse_header(bad, h)) << t;
    }
    bad = f;
    const std::uint32_t huge = kMaxPayload + 1;
    std::memcpy(bad.data() + 4, &huge, 4);
    EXPECT_NE(parse_header(bad, h).error.find("exceeds"), std::string::npos);
    const std::uint32_t max = kMaxPayload;
    std::memcpy(bad.data() + 4, &max, 4);
    EXPECT_TRUE(parse_header(bad, h));
}

TEST(MonitorProtocol, MalformedHellos) {
    std::vector<std::byte> f;
    encode_hello(sample_hello(4), f);
    const auto p = payload_of(f);
    Hello g;
    for (std::size_t n = 0; n < p.size(); ++n) EXPECT_FALSE(parse_hello(p.first(n), g)) << "prefix " << n;
    std::vector<std::byte> trailing(p.begin(), p.end());
    trailing.push_back(std::byte{0});
    EXPECT_NE(parse_hello(trailing, g).error.find("trailing"), std::string::npos);

    auto with = [](auto edit) {
        Hello h = sample_hello(2);
        edit(h);
        std::vector<std::byte> b;
        encode_hello(h, b);
        Hello out;
        return parse_hello(payload_of(b), out);
    };
    EXPECT_FALSE(with([](Hello& h) { h.names.clear(); h.units.clear(); }));  // 0 channels
    EXPECT_FALSE(with([](Hello& h) { h.names.resize(257, "x"); h.units.resize(257, "u"); }));
    EXPECT_TRUE(with([](Hello& h) { h.names.resize(256, "x"); h.units.resize(256, "u"); }));
    EXPECT_FALSE(with([](Hello& h) { h.sample_rate = 0; }));
    EXPECT_FALSE(with([](Hello& h) { h.sample_rate = -1; }));
    EXPECT_FALSE(with([](Hello& h) { h.sample_rate = std::numeric_limits<double>::quiet_NaN(); }));
    EXPECT_FALSE(with([](Hello& h) { h.sample_rate = 1e6; }));
    EXPECT_FALSE(with([](Hello& h) { h.stream_id = ""; }));
    EXPECT_FALSE(with([](Hello& h) { h.stream_id = ".."; }));
    EXPECT_FALSE(with([](Hello& h) { h.stream_id = "../etc"; }));
    EXPECT_FALSE(with([](Hello& h) { h.stream_id = "a b"; }));
    EXPECT_FALSE(with([](Hello& h) { h.stream_id = std::string(65, 'a'); }));
    EXPECT_TRUE(with([](Hello& h) { h.stream_id = std::string(64, 'a'); }));
    EXPECT_FALSE(with([](Hello& h) { h.token = std::string(257, 't'); }));
    EXPECT_FALSE(with([](Hello& h) { h.names[1] = std::string(33, 'n'); }));
    EXPECT_FALSE(with([](Hello& h) { h.units[0] = "m\nV"; }));
}

TEST(MonitorProtocol, MalformedData) {
    std::vector<float> x(4 * 2, 1.0f);
    std::vector<std::byte> f;
    encode_data(0, 0, x, 2, f);
    const auto p = payload_of(f);
    DataView d;
    for (std::size_t n = 0; n < p.size(); ++n) EXPECT_FALSE(parse_data(p.first(n), 2, d)) << n;
    auto frames = [&](std::uint32_t n) {
        std::vector<std::byte> b(p.begin(), p.end());
        std::memcpy(b.data() + 16, &n, 4);
        return parse_data(b, 2, d);
    };
    EXPECT_FALSE(frames(0));
    EXPECT_FALSE(frames(3));
    EXPECT_FALSE(frames(4097));
    EXPECT_FALSE(frames(0xFFFFFFFFu));  // frames × channels × 4 must not overflow into a "match"
    EXPECT_TRUE(frames(4));
}

TEST(MonitorProtocol, SplitterReassemblesAnyChunking) {
    std::vector<std::byte> stream;
    encode_hello(sample_hello(2), stream);
    std::vector<float> x(10 * 2);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
    encode_data(0, 1, x, 2, stream);
    encode_data(10, 2, x, 2, stream);
    encode_bye(stream);
    std::mt19937 rng(3);
    for (int trial = 0; trial < 50; ++trial) {
        FrameSplitter sp;
        std::vector<Type> got;
        std::size_t pos = 0;
        while (pos < stream.size()) {
            const std::size_t chunk = std::min<std::size_t>(1 + rng() % 17, stream.size() - pos);
            std::size_t used = 0;
            while (used < chunk) {
                used += sp.feed(std::span(stream).subspan(pos + used, chunk - used));
                ASSERT_FALSE(sp.failed());
                if (sp.ready()) {
                    got.push_back(sp.header().type);
                    if (sp.header().type == Type::data) {
                        DataView d;
                        ASSERT_TRUE(parse_data(sp.payload(), 2, d));
                        EXPECT_EQ(sample_at(d, 19), 19.0f);
                    }
                    sp.next();
                }
            }
            pos += chunk;
        }
        ASSERT_EQ(got.size(), 4u);
        EXPECT_EQ(got[0], Type::hello);
        EXPECT_EQ(got[3], Type::bye);
    }
    FrameSplitter sp;
    const char* garbage = "GET / HTTP/1.1\r\n";
    sp.feed(std::as_bytes(std::span(garbage, 16)));
    EXPECT_TRUE(sp.failed());
    EXPECT_EQ(sp.feed(std::as_bytes(std::span(garbage, 16))), 0u);
}

TEST(MonitorProtocol, RandomBytesNeverCrash) {
    std::mt19937 rng(11);
    std::vector<std::byte> b;
    for (int i = 0; i < 20000; ++i) {
        b.resize(rng() % 300);
        for (auto& x : b) x = static_cast<std::byte>(rng());
        if (b.size() > 2 && (i % 2)) b[0] = std::byte{'S'}, b[1] = std::byte{'M'}, b[2] = std::byte{1};
        Header h;
        Hello g;
        DataView d;
        Welcome w;
        std::string e;
        (void)parse_header(b, h);
        (void)parse_hello(b, g);
        (void)parse_data(b, 1 + rng() % 8, d);
        (void)parse_welcome(b, w);
        (void)parse_error(b, e);
    }
}

TEST(MonitorWfdb, MatchesPhysioNetPackage) {
    const auto dir = wfdb_dir();
    if (dir.empty()) GTEST_SKIP() << "../shared/data/wfdb-records absent";
    std::ifstream gf(fs::path(SSM_SOURCE_DIR) / "tests/monitor/wfdb_golden.json");
    const auto golden = nlohmann::json::parse(gf);
    for (const auto& [name, g] : golden["records"].items()) {
        const auto r = read_wfdb(dir / (name + ".hea"));
        EXPECT_EQ(r.sample_rate, g["fs"].get<double>()) << name;
        EXPECT_EQ(r.frames, g["frames"].get<std::size_t>()) << name;
        EXPECT_EQ(r.names, g["names"].get<std::vector<std::string>>()) << name;
        EXPECT_EQ(r.units, g["units"].get<std::vector<std::string>>()) << name;
        const auto idx = g["index"].get<std::vector<std::size_t>>();
        const auto val = g["values"].get<std::vector<std::vector<double>>>();
        for (std::size_t k = 0; k < idx.size(); ++k)
            for (std::size_t c = 0; c < r.channels; ++c)
                EXPECT_NEAR(r.samples[idx[k] * r.channels + c], val[k][c], 1e-6) << name << " frame " << idx[k];
        const auto sums = g["sum"].get<std::vector<double>>();
        for (std::size_t c = 0; c < r.channels; ++c) {
            double s = 0;
            for (std::size_t i = 0; i < r.frames; ++i)
                if (std::isfinite(r.samples[i * r.channels + c])) s += r.samples[i * r.channels + c];  // nansum
            EXPECT_NEAR(s, sums[c], 1e-6 * r.frames) << name << " channel " << c;
        }
    }
    const auto part = read_wfdb(dir / "100", 1000);
    EXPECT_EQ(part.frames, 1000u);
}

TEST(MonitorWfdb, CleanErrors) {
    const auto d = tmpdir("wfdb");
    EXPECT_THROW(read_wfdb(d / "missing"), ssm::UsageError);
    std::ofstream(d / "bad.hea") << "bad 1 250 100\nbad.dat 311 200 12 0 0 0 0 x\n";
    try {
        read_wfdb(d / "bad.hea");
        FAIL();
    } catch (const ssm::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("311"), std::string::npos) << e.what();
    }
    // A signal file shorter than the header says: the complete frames present are read.
    std::ofstream(d / "short.hea") << "# comment first\nshort 2 100 50\nshort.dat 16 100/uV 16 0 0 0 0 A\nshort.dat 16 100 16 0 0 0 0 B\n";
    {
        std::ofstream dat(d / "short.dat", std::ios::binary);
        const std::int16_t v[7] = {100, -200, 300, -400, 500, -600, 700};
        dat.write(reinterpret_cast<const char*>(v), sizeof v);
    }
    const auto r = read_wfdb(d / "short.hea");
    EXPECT_EQ(r.frames, 3u);
    EXPECT_EQ(r.units[0], "uV");
    EXPECT_EQ(r.units[1], "mV");
    EXPECT_FLOAT_EQ(r.samples[1], -2.0f);
    EXPECT_FLOAT_EQ(r.samples[4], 5.0f);
    std::ofstream(d / "empty.hea") << "empty 1 100 0\nempty.dat 16 100 16 0 0 0 0 A\n";
    std::ofstream(d / "empty.dat");
    EXPECT_THROW(read_wfdb(d / "empty.hea"), ssm::UsageError);
    std::ofstream(d / "gain.hea") << "gain 1 100\ngain.dat 16 abc 16 0 0 0 0 A\n";
    EXPECT_THROW(read_wfdb(d / "gain.hea"), ssm::UsageError);
}

TEST(MonitorRecording, WriteReadGapsAndResume) {
    const auto root = tmpdir("rec");
    const Hello h = sample_hello(2);
    std::vector<float> x(2 * 10);
    {
        Recorder r;
        EXPECT_EQ(r.open(root, h), 0u);
        for (int k = 0; k < 3; ++k) {
            for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(k * 100 + static_cast<int>(i));
            IndexEntry e;
            e.seq = k == 2 ? 25 : static_cast<std::uint64_t>(10 * k);  // frames 20..24 missing
            e.frames = 10;
            if (k == 2) { e.flags = kGapBefore; e.gap_frames = 5; }
            r.append(e, reinterpret_cast<const std::byte*>(x.data()), x.size() * 4);
        }
        r.flush_if_due(0, true);
    }
    auto rec = read_recording(root / h.stream_id);
    ASSERT_EQ(rec.index.size(), 3u);
    EXPECT_EQ(rec.samples.size(), 60u);
    EXPECT_EQ(rec.index[2].seq, 25u);
    EXPECT_EQ(rec.index[2].file_frame, 20u);
    EXPECT_EQ(rec.index[2].flags & kGapBefore, kGapBefore);
    EXPECT_EQ(rec.samples[2 * 20 + 1], 201.0f);
    EXPECT_EQ(rec.meta.names, h.names);
    // Reopening resumes after the last frame; another shape is refused.
    {
        Recorder r;
        EXPECT_EQ(r.open(root, h), 35u);
        Hello other = sample_hello(3);
        Recorder r2;
        EXPECT_THROW(r2.open(root, other), ssm::UsageError);
    }
}

TEST(MonitorRecording, TornTailAfterCrashIsCutNotMisread) {
    const auto root = tmpdir("torn");
    const Hello h = sample_hello(1);
    std::vector<float> x(8, 1.5f);
    {
        Recorder r;
        r.open(root, h);
        for (int k = 0; k < 4; ++k) {
            IndexEntry e;
            e.seq = static_cast<std::uint64_t>(8 * k);
            e.frames = 8;
            r.append(e, reinterpret_cast<const std::byte*>(x.data()), 32);
        }
        r.flush_if_due(0, true);
    }
    const auto dir = root / h.stream_id;
    // As after kill -9 between writes: the last block's samples half there, the index entry torn too.
    fs::resize_file(dir / "samples.f32", 3 * 32 + 12);
    fs::resize_file(dir / "index.bin", 3 * sizeof(IndexEntry) + 20);
    auto rec = read_recording(dir);
    EXPECT_EQ(rec.index.size(), 3u);
    EXPECT_EQ(rec.samples.size(), 24u);
    EXPECT_GE(rec.dropped_tail_entries, 1u);
    Recorder r;
    EXPECT_EQ(r.open(root, h), 24u);  // resumes after the last complete frame, files cut back
    r.close();
    EXPECT_EQ(fs::file_size(dir / "samples.f32"), 24u * 4);
    EXPECT_EQ(fs::file_size(dir / "index.bin"), 3 * sizeof(IndexEntry));
}

TEST(MonitorChain, ParseDesignAndRateChecks) {
    const auto c = Chain::parse("notch:60,bandpass:0.5:40,highpass:1:3,lowpass:100,dcblock:0.5");
    EXPECT_EQ(c.size(), 5u);
    const auto m500 = c.models_for(500);
    ASSERT_EQ(m500.size(), 5u);
    for (const auto& m : m500) EXPECT_EQ(m->info().sample_rate, 500);
    EXPECT_EQ(c.models_for(500)[0].get(), m500[0].get());  // designed once per rate
    EXPECT_THROW(c.models_for(150), ssm::UsageError);       // lowpass:100 is above Nyquist at 150 Hz
    EXPECT_THROW(Chain::parse("notch"), ssm::UsageError);
    EXPECT_THROW(Chain::parse("notch:sixty"), ssm::UsageError);
    EXPECT_THROW(Chain::parse("bandpass:1"), ssm::UsageError);
    EXPECT_THROW(Chain::parse("notch:60,,notch:50"), ssm::UsageError);
    EXPECT_ANY_THROW(Chain::parse("/nonexistent/model.safetensors"));
    EXPECT_EQ(Chain::parse("").size(), 0u);

    const fs::path ecg = fs::path(SSM_SOURCE_DIR) / "models/ecg-denoiser/ecg-denoiser.safetensors";
    if (!fs::exists(ecg)) GTEST_SKIP() << "shipped ECG model absent";
    const auto mixed = Chain::parse("notch:60," + ecg.string());
    EXPECT_EQ(mixed.models_for(360).size(), 2u);
    try {
        mixed.models_for(500);
        FAIL() << "a 360 Hz model accepted for a 500 Hz stream";
    } catch (const ssm::UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("360"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("500"), std::string::npos) << e.what();
    }
}

TEST(MonitorQrs, SyntheticPulseTrainRate) {
    const double rate = 360;
    QrsDetector q(rate);
    const double bpm = 72;
    const std::size_t period = static_cast<std::size_t>(rate * 60 / bpm);
    int beats = 0;
    for (std::size_t n = 0; n < static_cast<std::size_t>(30 * rate); ++n) {
        const double ph = static_cast<double>(n % period);
        const float x = static_cast<float>(std::exp(-0.5 * std::pow((ph - 50) / 4.0, 2)) + 0.05 * std::sin(n * 0.01));
        beats += q.push(x, n);
    }
    EXPECT_NEAR(q.heart_rate(static_cast<std::uint64_t>(30 * rate)), bpm, 1.0);
    EXPECT_NEAR(beats, 33, 2);  // 30 s at 72 bpm = 36 beats, less those in the 2 s learning phase
}

TEST(MonitorQrs, Mitbih100HeartRate) {
    const auto dir = wfdb_dir();
    if (dir.empty()) GTEST_SKIP() << "../shared/data/wfdb-records absent";
    const auto r = read_wfdb(dir / "100", static_cast<std::size_t>(60 * 360));
    QrsDetector q(r.sample_rate);
    int beats = 0;
    for (std::size_t n = 0; n < r.frames; ++n) beats += q.push(r.samples[n * 2], n);
    // MIT-BIH 100 has 74 annotated beats in its first minute (100.atr); the first 2 s are the learning phase.
    EXPECT_NEAR(beats, 72, 3);
    EXPECT_GT(q.heart_rate(r.frames), 65);
    EXPECT_LT(q.heart_rate(r.frames), 85);
}

TEST(MonitorQuality, FlatNoisyAndClean) {
    QualityIndex same(100), flat(100), half(100), bad(100);
    for (int n = 0; n < 400; ++n) {
        const float s = std::sin(0.3f * static_cast<float>(n));
        same.push(s, s);
        flat.push(1.0f, 0.0f);
        half.push(s, s * std::sqrt(0.5f));
        bad.push(n == 250 ? std::numeric_limits<float>::infinity() : s, s);
    }
    EXPECT_NEAR(same.value(), 1.0, 1e-6);
    EXPECT_EQ(flat.value(), 0.0);
    EXPECT_NEAR(half.value(), 0.5, 0.01);
    EXPECT_EQ(bad.value(), 0.0);  // the last window (200..399) held an Inf
}

TEST(MonitorRealtime, PerFramePathAllocatesNothing) {
    // What a worker does per data frame: parse, run each channel's chain, QRS, quality, record.
    const auto c = Chain::parse("notch:60,bandpass:0.5:40");
    const auto models = c.models_for(500);
    std::vector<ssm::Stream> chain;
    for (const auto& m : models) {
        chain.emplace_back(m);
        chain.back().prepare({.sample_rate = 500, .max_block = kMaxFramesPerData, .channels = 1});
    }
    QrsDetector q(500);
    QualityIndex sqi(500);
    const auto root = tmpdir("rt");
    Recorder rec;
    rec.open(root, sample_hello(1));
    std::vector<float> x(50), a(kMaxFramesPerData), b(kMaxFramesPerData);
    std::vector<std::byte> f;
    encode_data(0, 0, x, 1, f);
    IndexEntry e;
    e.frames = 50;
    rec.append(e, payload_of(f).data() + 20, 200);  // first write allocates the FILE buffer (prepare)
    counting = true;
    allocations = 0;
    for (int k = 0; k < 200; ++k) {
        DataView d;
        if (!parse_data(payload_of(f), 1, d)) break;
        for (std::size_t i = 0; i < d.frames; ++i) a[i] = sample_at(d, i) + static_cast<float>(k);
        float* cur = a.data();
        float* nxt = b.data();
        for (auto& s : chain) {
            s.process(cur, nxt, d.frames);
            std::swap(cur, nxt);
        }
        for (std::size_t i = 0; i < d.frames; ++i) {
            q.push(cur[i], static_cast<std::uint64_t>(k) * 50 + i);
            sqi.push(a[i], cur[i]);
        }
        e.seq = static_cast<std::uint64_t>(k) * 50;
        rec.append(e, d.samples, 200);
    }
    counting = false;
    EXPECT_EQ(allocations.load(), 0);
}

// ---------------------------------------------------------------------------------------------------------------
// TLS

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
using tcp = net::ip::tcp;

struct TlsFiles {
    fs::path cert, key, other_key, encrypted_key;
};

/** A throwaway self-signed certificate for "localhost" (EC P-256), its key, another key, and the key encrypted; made
 * with the openssl CLI in a temporary directory. nullopt when the CLI is missing. */
std::optional<TlsFiles> make_tls_files() {
    const auto d = tmpdir("tls");
    const std::string cmd =
        "cd '" + d.string() + "' && ( "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem "
        "-days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost && "
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out other.pem && "
        "openssl pkey -in key.pem -aes256 -passout pass:secret -out encrypted.pem ) >openssl.log 2>&1";
    if (std::system(cmd.c_str()) != 0) return std::nullopt;
    return TlsFiles{d / "cert.pem", d / "key.pem", d / "other.pem", d / "encrypted.pem"};
}

std::string usage_error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ssm::UsageError& e) {
        return e.what();
    }
    return "(no error)";
}

struct Handshake {
    std::string server, client;  // the error each side reported; empty: that side completed its handshake
};

/** One handshake over loopback: the server's side as `serve` does it, the client's as `send` does it (SNI and name
 * check for `host`, whatever address it connects to). */
Handshake tls_handshake(ssl::context& server_ctx, ssl::context& client_ctx, const std::string& host, bool verify) {
    net::io_context ioc;
    tcp::acceptor acc(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    Handshake r;
    std::thread server([&] {
        ssl::stream<tcp::socket> s(ioc, server_ctx);
        boost::system::error_code ec;
        acc.accept(s.next_layer(), ec);
        if (!ec) s.handshake(ssl::stream_base::server, ec);
        if (ec) r.server = tls_server_error(ec);
    });
    ssl::stream<tcp::socket> c(ioc, client_ctx);
    boost::system::error_code ec;
    c.next_layer().connect(acc.local_endpoint(), ec);
    if (!ec) {
        set_tls_peer(c.native_handle(), host, verify);
        c.handshake(ssl::stream_base::client, ec);
    }
    if (ec) {
        r.client = tls_client_error(ec, c.native_handle(), verify);
        c.next_layer().close(ec);  // the server is not left waiting
        server.join();
    } else {
        server.join();  // it finishes on the client's last handshake message, which has been sent
        c.next_layer().close(ec);
    }
    return r;
}

/** What the server's handshake makes of `bytes` from a client that does not speak TLS. */
std::string server_error_for_plaintext(ssl::context& server_ctx, const std::string& bytes) {
    net::io_context ioc;
    tcp::acceptor acc(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    std::string err;
    std::thread server([&] {
        ssl::stream<tcp::socket> s(ioc, server_ctx);
        boost::system::error_code ec;
        acc.accept(s.next_layer(), ec);
        if (!ec) s.handshake(ssl::stream_base::server, ec);
        err = ec ? tls_server_error(ec) : "(handshake succeeded)";
    });
    tcp::socket c(ioc);
    c.connect(acc.local_endpoint());
    net::write(c, net::buffer(bytes));
    server.join();
    return err;
}

}  // namespace

TEST(MonitorTls, ServerRefusesBadCertificateAndKeyFiles) {
    const auto f = make_tls_files();
    if (!f) GTEST_SKIP() << "the openssl command is not installed";
    const std::string cert = f->cert.string(), key = f->key.string();
    EXPECT_NO_THROW(make_server_tls(cert, key));
    auto err = usage_error_of([&] { make_server_tls(cert + ".missing", key); });
    EXPECT_NE(err.find("--cert " + cert + ".missing: cannot open"), std::string::npos) << err;
    err = usage_error_of([&] { make_server_tls(cert, key + ".missing"); });
    EXPECT_NE(err.find("--key " + key + ".missing: cannot open"), std::string::npos) << err;
    const auto junk = f->cert.parent_path() / "junk.pem";
    std::ofstream(junk) << "not a certificate\n";
    err = usage_error_of([&] { make_server_tls(junk.string(), key); });
    EXPECT_NE(err.find("not a PEM file"), std::string::npos) << err;
    err = usage_error_of([&] { make_server_tls(key, key); });  // a key where the certificate belongs
    EXPECT_NE(err.find("--cert " + key + ": no usable PEM certificate"), std::string::npos) << err;
    err = usage_error_of([&] { make_server_tls(cert, cert); });  // a certificate where the key belongs
    EXPECT_NE(err.find("--key " + cert + ": no usable PEM private key"), std::string::npos) << err;
    err = usage_error_of([&] { make_server_tls(cert, f->other_key.string()); });
    EXPECT_NE(err.find("does not belong to the certificate in --cert " + cert), std::string::npos) << err;
    err = usage_error_of([&] { make_server_tls(cert, f->encrypted_key.string()); });  // refused, never a prompt
    EXPECT_NE(err.find("the key is encrypted"), std::string::npos) << err;
    err = usage_error_of([&] { make_client_tls(junk.string(), false); });
    EXPECT_NE(err.find("--ca " + junk.string() + ": not a PEM file"), std::string::npos) << err;
}

TEST(MonitorTls, ServerSettings) {
    const auto f = make_tls_files();
    if (!f) GTEST_SKIP() << "the openssl command is not installed";
    auto ctx = make_server_tls(f->cert.string(), f->key.string());
    EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx.native_handle()), TLS1_2_VERSION);
    const auto opts = SSL_CTX_get_options(ctx.native_handle());
    EXPECT_TRUE(opts & SSL_OP_NO_COMPRESSION);
    EXPECT_TRUE(opts & SSL_OP_NO_RENEGOTIATION);
    EXPECT_TRUE(opts & SSL_OP_NO_TLSv1_1);
    EXPECT_EQ(SSL_CTX_get_min_proto_version(make_client_tls(f->cert.string(), false).native_handle()), TLS1_2_VERSION);
}

TEST(MonitorTls, HandshakeChecksCertificateNameAndVersion) {
    const auto f = make_tls_files();
    if (!f) GTEST_SKIP() << "the openssl command is not installed";
    auto server = make_server_tls(f->cert.string(), f->key.string());
    auto trusting = make_client_tls(f->cert.string(), false);  // --ca cert.pem
    auto h = tls_handshake(server, trusting, "localhost", true);
    EXPECT_EQ(h.client, "");
    EXPECT_EQ(h.server, "");
    // --tls alone: the system's store does not know a self-signed certificate.
    auto system = make_client_tls("", false);
    h = tls_handshake(server, system, "localhost", true);
    EXPECT_NE(h.client.find("the server's certificate was rejected: self-signed certificate"), std::string::npos) << h.client;
    EXPECT_NE(h.server, "");
    // The right certificate for another name: the certificate names localhost only.
    h = tls_handshake(server, trusting, "127.0.0.1", true);
    EXPECT_NE(h.client.find("IP address mismatch"), std::string::npos) << h.client;
    h = tls_handshake(server, trusting, "monitor.example", true);
    EXPECT_NE(h.client.find("hostname mismatch"), std::string::npos) << h.client;
    // --insecure: no check at all.
    auto insecure = make_client_tls("", true);
    h = tls_handshake(server, insecure, "monitor.example", false);
    EXPECT_EQ(h.client, "");
    // A client that offers TLS 1.1 at most is refused by the server (its floor is 1.2).
    ssl::context old(ssl::context::tls_client);
    SSL_CTX_set_security_level(old.native_handle(), 0);
    ASSERT_EQ(SSL_CTX_set_cipher_list(old.native_handle(), "DEFAULT:@SECLEVEL=0"), 1);
    ASSERT_EQ(SSL_CTX_set_min_proto_version(old.native_handle(), TLS1_VERSION), 1);
    ASSERT_EQ(SSL_CTX_set_max_proto_version(old.native_handle(), TLS1_1_VERSION), 1);
    old.set_verify_mode(ssl::verify_none);
    h = tls_handshake(server, old, "localhost", false);
    EXPECT_NE(h.server.find("unsupported protocol"), std::string::npos) << h.server;
    EXPECT_NE(h.client, "");
}

TEST(MonitorTls, PlaintextClientsAreToldApart) {
    const auto f = make_tls_files();
    if (!f) GTEST_SKIP() << "the openssl command is not installed";
    auto server = make_server_tls(f->cert.string(), f->key.string());
    Hello hello = sample_hello(2);
    std::vector<std::byte> frame;
    encode_hello(hello, frame);
    const std::string binary(reinterpret_cast<const char*>(frame.data()), frame.size());
    auto err = server_error_for_plaintext(server, binary);
    EXPECT_NE(err.find("not TLS (a plaintext client on a TLS-only port?)"), std::string::npos) << err;
    err = server_error_for_plaintext(server, "GET /?token=x HTTP/1.1\r\nHost: localhost\r\n\r\n");
    EXPECT_NE(err.find("plain HTTP on a TLS-only port"), std::string::npos) << err;
}

namespace {

/** Reads frames the way the server's TCP ingest does (a deadline, then an async read of the header and one of the
 * payload, the next read started from the completion), counting allocations from frame `warm` on. */
template <class S>
struct FrameReader {
    S& s;
    int frames, warm;
    std::array<std::byte, kHeaderBytes> hdr{};
    std::vector<std::byte> payload;
    int got = 0;
    bool failed = false;
    void next() {
        beast::get_lowest_layer(s).expires_after(std::chrono::seconds(10));
        net::async_read(s, net::buffer(hdr), [this](beast::error_code ec, std::size_t) {
            if (ec) {
                failed = true;
                return;
            }
            net::async_read(s, net::buffer(payload), [this](beast::error_code ec2, std::size_t) {
                if (ec2) {
                    failed = true;
                    return;
                }
                if (++got == warm) {
                    allocations = 0;
                    counting = true;
                }
                if (got == frames) {
                    counting = false;
                    return;
                }
                next();
            });
        });
    }
};

/** Allocations while the server's side of a connection reads 200 data frames (after 20 to warm up), plain or over
 * TLS. The client writes them all beforehand (they fit in the socket buffers), so only the reading is counted. */
long allocations_reading_200_frames(ssl::context* server_ctx, ssl::context* client_ctx) {
    net::io_context ioc;
    tcp::acceptor acc(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    tcp::socket client_sock(ioc);
    client_sock.connect(acc.local_endpoint());
    tcp::socket accepted = acc.accept();
    std::vector<std::byte> frame;
    encode_data(0, 0, std::vector<float>(25 * 4, 0.25f), 4, frame);
    constexpr int kWarm = 20, kFrames = kWarm + 200;
    auto run = [&](auto& server, auto& client) {
        for (int i = 0; i < kFrames; ++i) net::write(client, net::buffer(frame));
        FrameReader<std::decay_t<decltype(server)>> r{server, kFrames, kWarm, {}, std::vector<std::byte>(frame.size() - kHeaderBytes)};
        r.next();
        ioc.run();
        EXPECT_FALSE(r.failed);
        EXPECT_EQ(r.got, kFrames);
    };
    if (!server_ctx) {
        beast::tcp_stream server(std::move(accepted));
        run(server, client_sock);
    } else {
        beast::ssl_stream<beast::tcp_stream> server(beast::tcp_stream(std::move(accepted)), *server_ctx);
        ssl::stream<tcp::socket&> client(client_sock, *client_ctx);
        keep_record_buffers(server.native_handle());  // as serve does
        keep_record_buffers(client.native_handle());
        std::thread hs([&] { client.handshake(ssl::stream_base::client); });
        server.handshake(ssl::stream_base::server);
        hs.join();
        run(server, client);
    }
    counting = false;
    return allocations.load();
}

}  // namespace

TEST(MonitorTls, NoBufferChurnPerFrame) {
    // The network thread's reads are not allocation-free in plaintext either: Beast's stream allocates for each
    // socket read it makes (its deadline). Here the frames are all in the socket before reading starts, so TLS reads
    // many records per socket read and what is left is TLS's own cost per frame: OpenSSL 3.0 allocates once per TLS
    // 1.3 record received (the record header it authenticates), never per TLS 1.2 record. Asio's default of freeing
    // the record buffers whenever they run empty would add one more per record (keep_record_buffers turns it off).
    const auto f = make_tls_files();
    if (!f) GTEST_SKIP() << "the openssl command is not installed";
    auto server = make_server_tls(f->cert.string(), f->key.string());
    auto client = make_client_tls("", true);
    const long plain = allocations_reading_200_frames(nullptr, nullptr);
    const long tls13 = allocations_reading_200_frames(&server, &client);
    ssl::context client12 = make_client_tls("", true);
    ASSERT_EQ(SSL_CTX_set_max_proto_version(client12.native_handle(), TLS1_2_VERSION), 1);
    const long tls12 = allocations_reading_200_frames(&server, &client12);
    std::printf("allocations reading 200 frames: plaintext %ld, TLS 1.3 %ld, TLS 1.2 %ld\n", plain, tls13, tls12);
    constexpr long kSocketReads = 40;  // Beast's, for the few socket reads that fetch the 200 frames
    EXPECT_LE(tls13, 200 + kSocketReads);
    EXPECT_LE(tls12, kSocketReads);
}
