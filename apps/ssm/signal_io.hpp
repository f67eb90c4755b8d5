#pragma once
// Chunked readers and writers for the files `ssm run` accepts: audio through libsndfile (WAV, FLAC, OGG, …),
// NumPy .npy (frames × channels) and CSV (one frame per line). Nothing holds a whole file in memory, and a writer
// only appears under its final name once `commit()` succeeds.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace ssm::app {

struct SignalInfo {
    std::size_t channels = 0;
    double sample_rate = 0;          // 0 = not stored in the file
    std::int64_t frames = -1;        // -1 = unknown until read
    std::vector<std::string> names;  // CSV column names, if any
    int audio_format = 0;            // libsndfile format of an audio input
};

class SignalReader {
public:
    virtual ~SignalReader() = default;
    const SignalInfo& info() const { return info_; }
    /** Reads up to `frames` interleaved frames; returns how many were read (0 at the end). Throws on a bad file. */
    virtual std::size_t read(float* dst, std::size_t frames) = 0;

protected:
    SignalInfo info_;
};

class SignalWriter {
public:
    virtual ~SignalWriter() = default;
    virtual void write(const float* src, std::size_t frames) = 0;
    /** Finishes the file and renames it into place. Without it, the destructor removes the partial file. */
    virtual void commit() = 0;
};

enum class FileKind { audio, npy, csv };
FileKind kind_of(const std::filesystem::path& p);

std::unique_ptr<SignalReader> open_reader(const std::filesystem::path& p);
/** `like` gives the audio container to follow when the output is audio too. */
std::unique_ptr<SignalWriter> open_writer(const std::filesystem::path& p, std::size_t channels, double sample_rate,
                                          std::int64_t frames_hint, const SignalInfo& like, std::vector<std::string> names);

}  // namespace ssm::app
