#pragma once
// On-disk recording of one stream (docs/monitor.md, "Recording format"): DIR/<stream id>/
//   meta.json    channels, names, units, sample rate, format
//   samples.f32  every frame received, float32 little-endian, interleaved, in arrival order (gaps are NOT filled)
//   index.bin    one 48-byte IndexEntry per data frame received: where its samples are and which seq they carry
// Both binary files are append-only and flushed at least once a second, so after a crash (kill -9) a reader gets
// everything up to the last flush: it keeps the index entries whose samples are wholly in samples.f32.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "protocol.hpp"

namespace ssm::monitor {

struct IndexEntry {
    std::uint64_t seq = 0;          // stream frame index of the first frame
    std::uint64_t file_frame = 0;   // frame offset of those samples in samples.f32
    std::uint32_t frames = 0;
    std::uint32_t flags = 0;        // kGapBefore, kResumed
    std::int64_t device_time_ns = 0;
    std::int64_t recv_time_ns = 0;  // server clock (Unix ns) when the frame was received
    std::uint64_t gap_frames = 0;   // frames missing before this one (kGapBefore)
};
static_assert(sizeof(IndexEntry) == 48);
inline constexpr std::uint32_t kGapBefore = 1, kResumed = 2;

/** Appends to one stream's recording; opening an existing recording of the same shape resumes it. */
class Recorder {
public:
    Recorder() = default;
    ~Recorder();
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;
    /** Creates or reopens DIR/<id>/. Throws ssm::UsageError when an existing recording has another shape.
     * Returns the next expected seq (0 for a new recording). */
    std::uint64_t open(const std::filesystem::path& dir, const Hello& hello);
    bool is_open() const noexcept { return samples_ != nullptr; }
    /** Appends one frame's samples (raw bytes as received) and its index entry. Buffered (no flush). */
    void append(const IndexEntry& e, const std::byte* samples, std::size_t bytes);
    /** Flushes both files to the OS if `force` or a second has passed since the last flush. */
    void flush_if_due(std::int64_t now_ns, bool force = false);
    void close();

private:
    std::FILE* samples_ = nullptr;
    std::FILE* index_ = nullptr;
    std::uint64_t file_frames_ = 0;
    std::size_t channels_ = 0;
    std::int64_t last_flush_ns_ = 0;
    bool dirty_ = false;
};

struct Recording {
    Hello meta;  // token empty
    std::vector<IndexEntry> index;
    std::vector<float> samples;  // file frames × channels
    std::uint64_t dropped_tail_entries = 0;  // index entries past the flushed samples (crash) or torn
};

/** Reads a recording directory written by Recorder (also one cut short by a crash). Throws ssm::UsageError. */
Recording read_recording(const std::filesystem::path& dir);

std::int64_t unix_now_ns() noexcept;

}  // namespace ssm::monitor
