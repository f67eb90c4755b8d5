#include "recording.hpp"

#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ssmstream/error.hpp"

namespace ssm::monitor {

std::int64_t unix_now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

namespace {
std::vector<std::byte> read_all(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    if (!f) return {};
    f.seekg(0, std::ios::end);
    const auto n = static_cast<std::size_t>(f.tellg());
    f.seekg(0);
    std::vector<std::byte> b(n);
    f.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(n));
    b.resize(static_cast<std::size_t>(f.gcount()));
    return b;
}

Hello read_meta(const std::filesystem::path& dir) {
    std::ifstream f(dir / "meta.json");
    if (!f) throw ssm::UsageError((dir / "meta.json").string() + ": cannot open (not an ssm-monitor recording?)");
    try {
        const auto j = nlohmann::json::parse(f);
        if (j.at("format").get<std::string>() != "ssm-monitor-recording-1")
            throw ssm::UsageError((dir / "meta.json").string() + ": unknown recording format");
        Hello h;
        h.stream_id = j.at("stream_id").get<std::string>();
        h.sample_rate = j.at("sample_rate").get<double>();
        h.names = j.at("names").get<std::vector<std::string>>();
        h.units = j.at("units").get<std::vector<std::string>>();
        if (h.names.empty() || h.names.size() > kMaxChannels || h.units.size() != h.names.size())
            throw ssm::UsageError((dir / "meta.json").string() + ": bad channel list");
        return h;
    } catch (const nlohmann::json::exception& e) {
        throw ssm::UsageError((dir / "meta.json").string() + ": " + e.what());
    }
}
}  // namespace

Recorder::~Recorder() { close(); }

std::uint64_t Recorder::open(const std::filesystem::path& root, const Hello& h) {
    close();
    const auto dir = root / h.stream_id;
    std::filesystem::create_directories(dir);
    std::uint64_t next_seq = 0;
    channels_ = h.channels();
    file_frames_ = 0;
    if (std::filesystem::exists(dir / "meta.json")) {
        const Recording old = read_recording(dir);
        if (old.meta.channels() != h.channels() || old.meta.sample_rate != h.sample_rate)
            throw ssm::UsageError("recording " + dir.string() + " exists with another channel count or sample rate");
        // Cut both files back to the consistent prefix (a crash may have left a torn tail), then append.
        file_frames_ = old.index.empty() ? 0 : old.index.back().file_frame + old.index.back().frames;
        std::filesystem::resize_file(dir / "samples.f32", file_frames_ * channels_ * 4);
        std::filesystem::resize_file(dir / "index.bin", old.index.size() * sizeof(IndexEntry));
        if (!old.index.empty()) next_seq = old.index.back().seq + old.index.back().frames;
    } else {
        nlohmann::json j;
        j["format"] = "ssm-monitor-recording-1";
        j["stream_id"] = h.stream_id;
        j["sample_rate"] = h.sample_rate;
        j["channels"] = h.channels();
        j["names"] = h.names;
        j["units"] = h.units;
        j["samples"] = "samples.f32: float32 little-endian, frames x channels interleaved, as received";
        j["index"] = "index.bin: 48-byte entries {u64 seq, u64 file_frame, u32 frames, u32 flags(1=gap before, 2=resumed), "
                     "i64 device_time_ns, i64 recv_time_ns, u64 gap_frames}";
        const auto tmp = dir / "meta.json.tmp";
        std::ofstream(tmp) << j.dump(2) << "\n";
        std::filesystem::rename(tmp, dir / "meta.json");
    }
    samples_ = std::fopen((dir / "samples.f32").c_str(), "ab");
    index_ = std::fopen((dir / "index.bin").c_str(), "ab");
    if (!samples_ || !index_) {
        close();
        throw ssm::UsageError("cannot open recording files in " + dir.string());
    }
    last_flush_ns_ = unix_now_ns();
    return next_seq;
}

void Recorder::append(const IndexEntry& e0, const std::byte* samples, std::size_t bytes) {
    if (!samples_) return;
    IndexEntry e = e0;
    e.file_frame = file_frames_;
    std::fwrite(samples, 1, bytes, samples_);
    std::fwrite(&e, sizeof e, 1, index_);
    file_frames_ += e.frames;
    dirty_ = true;
}

void Recorder::flush_if_due(std::int64_t now_ns, bool force) {
    if (!samples_ || !dirty_) return;
    if (!force && now_ns - last_flush_ns_ < 1'000'000'000 / 2) return;  // every 0.5 s: "at least every second" with margin
    std::fflush(samples_);  // samples first: an index entry never points past flushed samples
    std::fflush(index_);
    last_flush_ns_ = now_ns;
    dirty_ = false;
}

void Recorder::close() {
    if (samples_) std::fclose(samples_);
    if (index_) std::fclose(index_);
    samples_ = index_ = nullptr;
    dirty_ = false;
}

Recording read_recording(const std::filesystem::path& dir) {
    Recording r;
    r.meta = read_meta(dir);
    const std::size_t ch = r.meta.channels();
    const auto sbytes = read_all(dir / "samples.f32");
    const auto ibytes = read_all(dir / "index.bin");
    const std::uint64_t have_frames = sbytes.size() / (ch * 4);
    const std::size_t n = ibytes.size() / sizeof(IndexEntry);
    r.dropped_tail_entries = (ibytes.size() % sizeof(IndexEntry)) ? 1 : 0;
    std::uint64_t expect_file = 0;
    for (std::size_t i = 0; i < n; ++i) {
        IndexEntry e;
        std::memcpy(&e, ibytes.data() + i * sizeof e, sizeof e);
        if (e.file_frame != expect_file || e.frames == 0 || e.frames > kMaxFramesPerData ||
            e.file_frame + e.frames > have_frames) {
            r.dropped_tail_entries += n - i;
            break;
        }
        r.index.push_back(e);
        expect_file += e.frames;
    }
    r.samples.resize(expect_file * ch);
    if (!r.samples.empty()) std::memcpy(r.samples.data(), sbytes.data(), r.samples.size() * 4);
    return r;
}

}  // namespace ssm::monitor
