#include "files.hpp"

#include <samplerate.h>
#include <sndfile.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <vector>

#include "ssmstream/error.hpp"

namespace ssm::denoise {

namespace {

SNDFILE* open_wav(const std::string& path, double rate, bool append) {
    if (append && std::filesystem::exists(path)) {
        SF_INFO si{};
        SNDFILE* f = sf_open(path.c_str(), SFM_RDWR, &si);
        if (!f) throw Error(path + ": cannot reopen the recording to append: " + sf_strerror(nullptr));
        if (si.channels != 1 || si.samplerate != static_cast<int>(std::lround(rate))) {
            sf_close(f);
            throw Error(path + ": the recording to append to is not mono at " + std::to_string(std::lround(rate)) + " Hz");
        }
        sf_seek(f, 0, SEEK_END | SFM_WRITE);
        sf_command(f, SFC_SET_UPDATE_HEADER_AUTO, nullptr, SF_TRUE);
        return f;
    }
    SF_INFO si{};
    si.samplerate = static_cast<int>(std::lround(rate));
    si.channels = 1;
    si.format = SF_FORMAT_WAV | SF_FORMAT_FLOAT;  // the samples exactly as the callback saw them
    SNDFILE* f = sf_open(path.c_str(), SFM_WRITE, &si);
    if (!f) throw Error(path + ": cannot create the recording: " + sf_strerror(nullptr));
    // Rewrite the header on every write: a crash or kill leaves a readable file up to the last write.
    sf_command(f, SFC_SET_UPDATE_HEADER_AUTO, nullptr, SF_TRUE);
    return f;
}

}  // namespace

// ---- Recorder ---------------------------------------------------------------------------------------------------

Recorder::Recorder(const std::filesystem::path& in_path, const std::filesystem::path& out_path, double rate,
                   bool append)
    : in_path_(in_path.string()), out_path_(out_path.string()) {
    in_file_ = open_wav(in_path_, rate, append);
    try {
        out_file_ = open_wav(out_path_, rate, append);
    } catch (...) {
        sf_close(static_cast<SNDFILE*>(in_file_));
        throw;
    }
}

Recorder::~Recorder() {
    try {
        stop();
    } catch (...) {  // a destructor cannot report; stop() is called explicitly on the normal path
    }
}

void Recorder::start(SpscRing* in, SpscRing* out) {
    in_ = in;
    out_ = out;
    thread_ = std::thread([this] { run(); });
}

std::size_t Recorder::drain(SpscRing* ring, void* file, std::atomic<std::uint64_t>& count) {
    float buf[4096];
    std::size_t total = 0;
    for (;;) {
        const std::size_t n = ring->pop(buf, sizeof buf / sizeof buf[0]);
        if (n == 0) break;
        const sf_count_t w = sf_writef_float(static_cast<SNDFILE*>(file), buf, static_cast<sf_count_t>(n));
        if (w != static_cast<sf_count_t>(n) && error_.empty())
            error_ = std::string("recording: write failed: ") + sf_strerror(static_cast<SNDFILE*>(file));
        count.fetch_add(n);
        total += n;
    }
    return total;
}

void Recorder::run() {
    while (!stop_.load()) {
        const std::size_t n = drain(in_, in_file_, frames_in_) + drain(out_, out_file_, frames_out_);
        if (n == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

void Recorder::stop() {
    if (thread_.joinable()) {
        stop_.store(true);
        thread_.join();
    }
    if (in_ && in_file_) drain(in_, in_file_, frames_in_);  // the callback has stopped: what is left is the last of it
    if (out_ && out_file_) drain(out_, out_file_, frames_out_);
    in_ = out_ = nullptr;  // the rings are the engine's: a second stop() (the destructor) must not touch them
    if (in_file_) sf_close(static_cast<SNDFILE*>(in_file_));
    if (out_file_) sf_close(static_cast<SNDFILE*>(out_file_));
    in_file_ = out_file_ = nullptr;
    if (!error_.empty()) {
        const std::string e = error_;
        error_.clear();
        throw Error(e);
    }
}

// ---- FileSource -------------------------------------------------------------------------------------------------

FileSource::FileSource(const std::filesystem::path& path, double device_rate, std::size_t ring_frames)
    : path_(path.string()), device_rate_(device_rate), ring_(ring_frames) {
    if (!std::filesystem::exists(path)) throw Error(path_ + ": no such file");
    SF_INFO si{};
    SNDFILE* f = sf_open(path_.c_str(), SFM_READ, &si);
    if (!f) throw Error(path_ + ": cannot read as audio: " + sf_strerror(nullptr));
    if (si.channels < 1 || si.samplerate < 1 || si.frames < 1) {
        sf_close(f);
        throw Error(path_ + ": empty or malformed audio file");
    }
    file_ = f;
    file_rate_ = si.samplerate;
    file_frames_ = si.frames;
    channels_ = si.channels;
    if (std::abs(file_rate_ - device_rate_) > 1e-6) {
        int err = 0;
        src_ = src_new(SRC_SINC_MEDIUM_QUALITY, 1, &err);
        if (!src_ || !src_is_valid_ratio(device_rate_ / file_rate_)) {
            sf_close(f);
            if (src_) src_delete(static_cast<SRC_STATE*>(src_));
            throw Error(path_ + ": cannot resample its " + std::to_string(si.samplerate) + " Hz to the device's rate");
        }
    }
}

FileSource::~FileSource() {
    stop();
    if (file_) sf_close(static_cast<SNDFILE*>(file_));
    if (src_) src_delete(static_cast<SRC_STATE*>(src_));
}

void FileSource::start(std::size_t prefill) {
    thread_ = std::thread([this] { run(); });
    while (!eof_.load() && ring_.readable() < prefill) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

void FileSource::stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
}

void FileSource::run() {
    const std::size_t chunk = 2048;
    std::vector<float> inter(chunk * static_cast<std::size_t>(channels_)), mono(chunk);
    std::vector<float> res(static_cast<std::size_t>(std::ceil(chunk * device_rate_ / file_rate_)) + 256);
    auto push_all = [&](const float* p, std::size_t n) {
        while (n > 0 && !stop_.load()) {
            const std::size_t w = ring_.push(p, n);
            p += w;
            n -= w;
            pushed_.fetch_add(w);
            if (n) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    };
    bool end = false;
    while (!stop_.load() && !end) {
        const sf_count_t got = sf_readf_float(static_cast<SNDFILE*>(file_), inter.data(), chunk);
        const auto n = static_cast<std::size_t>(got > 0 ? got : 0);
        end = n < chunk;
        for (std::size_t i = 0; i < n; ++i) {  // mono: the mean of the channels
            float s = 0;
            for (int c = 0; c < channels_; ++c) s += inter[i * static_cast<std::size_t>(channels_) + static_cast<std::size_t>(c)];
            mono[i] = s / static_cast<float>(channels_);
        }
        if (!src_) {
            push_all(mono.data(), n);
            continue;
        }
        SRC_DATA d{};
        d.data_in = mono.data();
        d.input_frames = static_cast<long>(n);
        d.src_ratio = device_rate_ / file_rate_;
        d.end_of_input = end ? 1 : 0;
        for (;;) {  // at the end, call until the converter has flushed its tail
            d.data_out = res.data();
            d.output_frames = static_cast<long>(res.size());
            if (src_process(static_cast<SRC_STATE*>(src_), &d) != 0) break;
            push_all(res.data(), static_cast<std::size_t>(d.output_frames_gen));
            d.data_in += d.input_frames_used;
            d.input_frames -= d.input_frames_used;
            if (d.input_frames == 0 && (!end || d.output_frames_gen == 0)) break;
        }
    }
    eof_.store(true, std::memory_order_release);
}

}  // namespace ssm::denoise
