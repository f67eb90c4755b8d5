#pragma once
/** @file The file side of ssm-denoise, on ordinary threads: the recorder drains the callback's rings into two
 * WAV files, and the file source decodes `--file` into the ring the callback plays from. */
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>

#include "ring.hpp"

namespace ssm::denoise {

/** Writes what the callback pushed into `in`/`out` to two float WAV files, from its own thread. The WAV header is
 * rewritten on every write, so even a killed process leaves readable files; `stop()` drains and closes both. */
class Recorder {
public:
    /** `append`: go on writing at the end of existing recordings (a run resumed after its device came back). */
    Recorder(const std::filesystem::path& in_path, const std::filesystem::path& out_path, double rate,
             bool append = false);
    ~Recorder();
    Recorder(const Recorder&) = delete;
    Recorder& operator=(const Recorder&) = delete;

    /** Starts draining these rings (the engine's; they must outlive `stop()`). */
    void start(SpscRing* in, SpscRing* out);
    /** Drains what is left and closes both files. Idempotent. Throws on a write error (disk full...). */
    void stop();
    std::uint64_t frames_in() const noexcept { return frames_in_.load(); }
    std::uint64_t frames_out() const noexcept { return frames_out_.load(); }

private:
    void run();
    std::size_t drain(SpscRing* ring, void* file, std::atomic<std::uint64_t>& count);
    std::string in_path_, out_path_;
    void* in_file_ = nullptr;
    void* out_file_ = nullptr;
    SpscRing* in_ = nullptr;
    SpscRing* out_ = nullptr;
    std::thread thread_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> frames_in_{0}, frames_out_{0};
    std::string error_;
};

/** Decodes an audio file (mixed down to mono, resampled to the device's rate off the audio thread) into a ring. */
class FileSource {
public:
    /** Opens and checks the file; throws ssm::Error with a clear message if it cannot be read. */
    FileSource(const std::filesystem::path& path, double device_rate, std::size_t ring_frames);
    ~FileSource();
    FileSource(const FileSource&) = delete;
    FileSource& operator=(const FileSource&) = delete;

    double file_rate() const noexcept { return file_rate_; }
    std::int64_t file_frames() const noexcept { return file_frames_; }
    int file_channels() const noexcept { return channels_; }
    /** Starts the reader thread and waits until the ring holds `prefill` frames or the whole file. */
    void start(std::size_t prefill);
    SpscRing& ring() noexcept { return ring_; }
    const std::atomic<bool>& eof() const noexcept { return eof_; }
    /** Frames pushed so far (at the device rate). */
    std::uint64_t pushed() const noexcept { return pushed_.load(); }
    void stop();

private:
    void run();
    std::string path_;
    void* file_ = nullptr;
    void* src_ = nullptr;
    double file_rate_ = 0, device_rate_ = 0;
    std::int64_t file_frames_ = 0;
    int channels_ = 0;
    SpscRing ring_;
    std::thread thread_;
    std::atomic<bool> stop_{false}, eof_{false};
    std::atomic<std::uint64_t> pushed_{0};
};

}  // namespace ssm::denoise
