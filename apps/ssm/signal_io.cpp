#include "signal_io.hpp"

#include <sndfile.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ssmstream/error.hpp"

namespace ssm::app {

namespace fs = std::filesystem;

namespace {

std::string lower_ext(const fs::path& p) {
    auto e = p.extension().string();
    std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return e;
}

fs::path temp_beside(const fs::path& p) {
    auto t = p;
    t += ".part-" + std::to_string(::getpid());
    return t;
}

void finish_rename(const fs::path& tmp, const fs::path& final_path) {
    std::error_code ec;
    fs::rename(tmp, final_path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        throw Error(final_path.string() + ": cannot move the finished output into place: " + ec.message());
    }
}

// ---- audio (libsndfile) ----------------------------------------------------------------------------------------

class AudioReader final : public SignalReader {
public:
    explicit AudioReader(const fs::path& p) : path_(p.string()) {
        SF_INFO si{};
        f_ = sf_open(path_.c_str(), SFM_READ, &si);
        if (!f_) throw Error(path_ + ": cannot read as audio: " + sf_strerror(nullptr));
        info_.channels = static_cast<std::size_t>(si.channels);
        info_.sample_rate = si.samplerate;
        info_.frames = si.frames;
        info_.audio_format = si.format;
    }
    ~AudioReader() override { sf_close(f_); }
    std::size_t read(float* dst, std::size_t frames) override {
        const sf_count_t n = sf_readf_float(f_, dst, static_cast<sf_count_t>(frames));
        if (n < 0 || sf_error(f_) != SF_ERR_NO_ERROR) throw Error(path_ + ": read error: " + sf_strerror(f_));
        got_ += static_cast<std::size_t>(n);
        if (n == 0 && info_.frames > 0 && got_ < static_cast<std::size_t>(info_.frames))
            throw Error(path_ + ": truncated: header promises " + std::to_string(info_.frames) + " frames, found " + std::to_string(got_));
        return static_cast<std::size_t>(n);
    }

private:
    std::string path_;
    SNDFILE* f_ = nullptr;
    std::size_t got_ = 0;
};

class AudioWriter final : public SignalWriter {
public:
    AudioWriter(const fs::path& p, std::size_t channels, double rate, const SignalInfo& like) : final_(p), tmp_(temp_beside(p)) {
        const auto ext = lower_ext(p);
        int major = 0, sub = 0;
        if (ext == ".wav") { major = SF_FORMAT_WAV; sub = SF_FORMAT_FLOAT; }
        else if (ext == ".flac") { major = SF_FORMAT_FLAC; sub = SF_FORMAT_PCM_24; }
        else if (ext == ".ogg" || ext == ".oga") { major = SF_FORMAT_OGG; sub = SF_FORMAT_VORBIS; }
        else if (ext == ".aiff" || ext == ".aif") { major = SF_FORMAT_AIFF; sub = SF_FORMAT_FLOAT; }
        else throw UsageError(p.string() + ": unsupported output format '" + ext + "' (wav, flac, ogg, aiff, npy, csv)");
        if (ext == ".wav" && like.audio_format && (like.audio_format & SF_FORMAT_TYPEMASK) == SF_FORMAT_WAV &&
            (like.audio_format & SF_FORMAT_SUBMASK) == SF_FORMAT_PCM_16)
            sub = SF_FORMAT_PCM_16;  // keep a 16-bit WAV 16-bit: what the user gave, what they play
        SF_INFO si{};
        si.channels = static_cast<int>(channels);
        si.samplerate = static_cast<int>(rate > 0 ? rate : 48000);
        si.format = major | sub;
        if (!sf_format_check(&si)) throw UsageError(p.string() + ": libsndfile cannot write this channel count / rate in " + ext);
        f_ = sf_open(tmp_.c_str(), SFM_WRITE, &si);
        if (!f_) throw Error(p.string() + ": cannot create: " + sf_strerror(nullptr));
        if (sub == SF_FORMAT_PCM_16 || sub == SF_FORMAT_PCM_24) sf_command(f_, SFC_SET_CLIPPING, nullptr, SF_TRUE);
        channels_ = channels;
    }
    ~AudioWriter() override {
        if (f_) sf_close(f_);
        if (!committed_) {
            std::error_code ec;
            fs::remove(tmp_, ec);
        }
    }
    void write(const float* src, std::size_t frames) override {
        if (sf_writef_float(f_, src, static_cast<sf_count_t>(frames)) != static_cast<sf_count_t>(frames))
            throw Error(final_.string() + ": write failed: " + sf_strerror(f_));
    }
    void commit() override {
        sf_write_sync(f_);
        if (sf_close(f_) != 0) {
            f_ = nullptr;
            throw Error(final_.string() + ": closing failed");
        }
        f_ = nullptr;
        finish_rename(tmp_, final_);
        committed_ = true;
    }

private:
    fs::path final_, tmp_;
    SNDFILE* f_ = nullptr;
    std::size_t channels_ = 0;
    bool committed_ = false;
};

// ---- npy ------------------------------------------------------------------------------------------------------

class NpyReader final : public SignalReader {
public:
    explicit NpyReader(const fs::path& p) : path_(p.string()), is_(p, std::ios::binary) {
        if (!is_) throw Error(path_ + ": cannot open: " + std::strerror(errno));
        char magic[8];
        if (!is_.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path_ + ": not a .npy file (bad magic)");
        const int major = static_cast<unsigned char>(magic[6]);
        std::uint32_t hlen = 0;
        if (major == 1) {
            unsigned char b[2];
            if (!is_.read(reinterpret_cast<char*>(b), 2)) throw Error(path_ + ": truncated .npy header");
            hlen = b[0] | (b[1] << 8);
        } else if (major == 2 || major == 3) {
            unsigned char b[4];
            if (!is_.read(reinterpret_cast<char*>(b), 4)) throw Error(path_ + ": truncated .npy header");
            hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
        } else {
            throw Error(path_ + ": unsupported .npy version " + std::to_string(major));
        }
        if (hlen > (1u << 20)) throw Error(path_ + ": .npy header too long");
        std::string h(hlen, '\0');
        if (!is_.read(h.data(), hlen)) throw Error(path_ + ": truncated .npy header");
        auto field = [&](const std::string& key) {
            const auto k = h.find("'" + key + "'");
            if (k == std::string::npos) throw Error(path_ + ": .npy header lacks '" + key + "'");
            auto v = h.find(':', k);
            if (v == std::string::npos) throw Error(path_ + ": malformed .npy header");
            ++v;
            while (v < h.size() && h[v] == ' ') ++v;
            return v;
        };
        auto dpos = field("descr");
        if (h[dpos] != '\'') throw Error(path_ + ": malformed .npy descr");
        const auto dend = h.find('\'', dpos + 1);
        const std::string descr = h.substr(dpos + 1, dend - dpos - 1);
        if (descr == "<f4") { elem_ = 4; is_float_ = true; }
        else if (descr == "<f8") { elem_ = 8; is_float_ = true; }
        else if (descr == "<i2") { elem_ = 2; is_float_ = false; }
        else if (descr == "<i4") { elem_ = 4; is_float_ = false; }
        else throw Error(path_ + ": unsupported .npy dtype '" + descr + "' (float32, float64, int16, int32 little-endian)");
        const auto fpos = field("fortran_order");
        if (h.compare(fpos, 4, "True") == 0) throw Error(path_ + ": Fortran-ordered .npy is not supported; save with np.ascontiguousarray");
        auto spos = field("shape");
        const auto send = h.find(')', spos);
        if (h[spos] != '(' || send == std::string::npos) throw Error(path_ + ": malformed .npy shape");
        std::vector<std::uint64_t> dims;
        std::string inner = h.substr(spos + 1, send - spos - 1);
        std::stringstream ss(inner);
        std::string tok;
        while (std::getline(ss, tok, ',')) {
            tok.erase(std::remove(tok.begin(), tok.end(), ' '), tok.end());
            if (tok.empty()) continue;
            std::uint64_t d = 0;
            auto r = std::from_chars(tok.data(), tok.data() + tok.size(), d);
            if (r.ec != std::errc() || r.ptr != tok.data() + tok.size()) throw Error(path_ + ": malformed .npy shape");
            dims.push_back(d);
        }
        if (dims.empty() || dims.size() > 2) throw Error(path_ + ": .npy must be 1-D (frames) or 2-D (frames × channels)");
        info_.frames = static_cast<std::int64_t>(dims[0]);
        info_.channels = dims.size() == 2 ? dims[1] : 1;
        if (info_.channels == 0 || info_.channels > 4096) throw Error(path_ + ": bad channel count " + std::to_string(info_.channels));
        const auto data_start = static_cast<std::uint64_t>(is_.tellg());
        is_.seekg(0, std::ios::end);
        const auto size = static_cast<std::uint64_t>(is_.tellg());
        is_.seekg(static_cast<std::streamoff>(data_start));
        if (size - data_start < dims[0] * info_.channels * elem_)
            throw Error(path_ + ": truncated: shape promises " + std::to_string(dims[0]) + " frames, file holds " +
                        std::to_string((size - data_start) / (info_.channels * elem_)));
        left_ = dims[0];
    }
    std::size_t read(float* dst, std::size_t frames) override {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(frames, left_));
        if (n == 0) return 0;
        buf_.resize(n * info_.channels * elem_);
        if (!is_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()))) throw Error(path_ + ": read error (truncated?)");
        const std::size_t m = n * info_.channels;
        for (std::size_t i = 0; i < m; ++i) {
            const char* p = buf_.data() + i * elem_;
            if (is_float_ && elem_ == 4) { float v; std::memcpy(&v, p, 4); dst[i] = v; }
            else if (is_float_) { double v; std::memcpy(&v, p, 8); dst[i] = static_cast<float>(v); }
            else if (elem_ == 2) { std::int16_t v; std::memcpy(&v, p, 2); dst[i] = static_cast<float>(v) / 32768.0f; }
            else { std::int32_t v; std::memcpy(&v, p, 4); dst[i] = static_cast<float>(v) / 2147483648.0f; }
        }
        left_ -= n;
        return n;
    }

private:
    std::string path_;
    std::ifstream is_;
    std::size_t elem_ = 4;
    bool is_float_ = true;
    std::uint64_t left_ = 0;
    std::vector<char> buf_;
};

class NpyWriter final : public SignalWriter {
public:
    NpyWriter(const fs::path& p, std::size_t channels) : final_(p), tmp_(temp_beside(p)), channels_(channels) {
        os_.open(tmp_, std::ios::binary | std::ios::trunc);
        if (!os_) throw Error(p.string() + ": cannot create: " + std::strerror(errno));
        write_header(0);  // fixed-size header, patched with the frame count at commit
    }
    ~NpyWriter() override {
        if (!committed_) {
            os_.close();
            std::error_code ec;
            fs::remove(tmp_, ec);
        }
    }
    void write(const float* src, std::size_t frames) override {
        os_.write(reinterpret_cast<const char*>(src), static_cast<std::streamsize>(frames * channels_ * sizeof(float)));
        if (!os_) throw Error(final_.string() + ": write failed (disk full?)");
        frames_ += frames;
    }
    void commit() override {
        os_.seekp(0);
        write_header(frames_);
        os_.close();
        if (!os_) throw Error(final_.string() + ": write failed");
        finish_rename(tmp_, final_);
        committed_ = true;
    }

private:
    void write_header(std::uint64_t frames) {
        std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(frames) + ", " +
                           std::to_string(channels_) + "), }";
        const std::size_t total = 128;  // magic(6)+ver(2)+len(2)+dict+pad+'\n'; room for any 64-bit count
        dict.resize(total - 10 - 1, ' ');
        dict += '\n';
        const char head[10] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<char>((total - 10) & 0xff), static_cast<char>((total - 10) >> 8)};
        os_.write(head, 10);
        os_.write(dict.data(), static_cast<std::streamsize>(dict.size()));
    }
    fs::path final_, tmp_;
    std::ofstream os_;
    std::size_t channels_;
    std::uint64_t frames_ = 0;
    bool committed_ = false;
};

// ---- CSV -------------------------------------------------------------------------------------------------------

class CsvReader final : public SignalReader {
public:
    explicit CsvReader(const fs::path& p) : path_(p.string()), is_(p) {
        if (!is_) throw Error(path_ + ": cannot open: " + std::strerror(errno));
        std::string line;
        while (std::getline(is_, line)) {
            ++line_no_;
            strip(line);
            if (line.empty() || line[0] == '#') continue;
            std::vector<std::string> cells = split(line);
            float tmp;
            if (!parse_float(cells[0], tmp)) {
                info_.names = cells;  // a header line
            } else {
                pending_ = line;
                pending_line_ = line_no_;
                info_.channels = cells.size();
                break;
            }
            info_.channels = cells.size();
        }
        if (info_.channels == 0) throw Error(path_ + ": no data rows");
        if (!info_.names.empty() && info_.names.size() != info_.channels)
            throw Error(path_ + ": header has " + std::to_string(info_.names.size()) + " columns but rows have " + std::to_string(info_.channels));
    }
    std::size_t read(float* dst, std::size_t frames) override {
        std::size_t n = 0;
        std::string line;
        while (n < frames) {
            std::size_t ln;
            if (!pending_.empty()) {
                line = std::move(pending_);
                pending_.clear();
                ln = pending_line_;
            } else {
                if (!std::getline(is_, line)) break;
                ln = ++line_no_;
                strip(line);
                if (line.empty() || line[0] == '#') continue;
            }
            const auto cells = split(line);
            if (cells.size() != info_.channels)
                throw Error(path_ + ":" + std::to_string(ln) + ": " + std::to_string(cells.size()) + " columns, expected " + std::to_string(info_.channels));
            for (std::size_t c = 0; c < cells.size(); ++c)
                if (!parse_float(cells[c], dst[n * info_.channels + c]))
                    throw Error(path_ + ":" + std::to_string(ln) + ": '" + cells[c] + "' is not a number");
            ++n;
        }
        return n;
    }

private:
    static void strip(std::string& s) {
        while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
    }
    static std::vector<std::string> split(const std::string& line) {
        std::vector<std::string> out;
        std::string cell;
        std::stringstream ss(line);
        while (std::getline(ss, cell, ',')) {
            const auto b = cell.find_first_not_of(" \t"), e = cell.find_last_not_of(" \t");
            out.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
        }
        if (!line.empty() && line.back() == ',') out.push_back("");
        return out;
    }
    static bool parse_float(const std::string& s, float& v) {
        if (s.empty()) return false;
        if (s == "nan" || s == "NaN" || s == "NAN") { v = NAN; return true; }
        if (s == "inf" || s == "Inf" || s == "+inf") { v = INFINITY; return true; }
        if (s == "-inf" || s == "-Inf") { v = -INFINITY; return true; }
        auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        return r.ec == std::errc() && r.ptr == s.data() + s.size();
    }
    std::string path_;
    std::ifstream is_;
    std::string pending_;
    std::size_t line_no_ = 0, pending_line_ = 0;
};

class CsvWriter final : public SignalWriter {
public:
    CsvWriter(const fs::path& p, std::size_t channels, const std::vector<std::string>& names)
        : final_(p), tmp_(temp_beside(p)), channels_(channels) {
        f_ = std::fopen(tmp_.c_str(), "w");
        if (!f_) throw Error(p.string() + ": cannot create: " + std::strerror(errno));
        for (std::size_t c = 0; c < channels; ++c)
            std::fprintf(f_, "%s%s", c ? "," : "", c < names.size() ? names[c].c_str() : ("ch" + std::to_string(c)).c_str());
        std::fputc('\n', f_);
    }
    ~CsvWriter() override {
        if (f_) std::fclose(f_);
        if (!committed_) {
            std::error_code ec;
            fs::remove(tmp_, ec);
        }
    }
    void write(const float* src, std::size_t frames) override {
        for (std::size_t t = 0; t < frames; ++t) {
            for (std::size_t c = 0; c < channels_; ++c) std::fprintf(f_, "%s%.9g", c ? "," : "", static_cast<double>(src[t * channels_ + c]));
            std::fputc('\n', f_);
        }
        if (std::ferror(f_)) throw Error(final_.string() + ": write failed (disk full?)");
    }
    void commit() override {
        const bool bad = std::fclose(f_) != 0;
        f_ = nullptr;
        if (bad) throw Error(final_.string() + ": write failed");
        finish_rename(tmp_, final_);
        committed_ = true;
    }

private:
    fs::path final_, tmp_;
    std::size_t channels_;
    std::FILE* f_ = nullptr;
    bool committed_ = false;
};

}  // namespace

FileKind kind_of(const fs::path& p) {
    const auto e = lower_ext(p);
    if (e == ".npy") return FileKind::npy;
    if (e == ".csv" || e == ".txt") return FileKind::csv;
    return FileKind::audio;
}

std::unique_ptr<SignalReader> open_reader(const fs::path& p) {
    std::error_code ec;
    if (!fs::exists(p, ec)) throw Error(p.string() + ": no such file");
    if (fs::is_directory(p, ec)) throw Error(p.string() + ": is a directory, not a signal file");
    switch (kind_of(p)) {
        case FileKind::npy: return std::make_unique<NpyReader>(p);
        case FileKind::csv: return std::make_unique<CsvReader>(p);
        case FileKind::audio: return std::make_unique<AudioReader>(p);
    }
    return nullptr;
}

std::unique_ptr<SignalWriter> open_writer(const fs::path& p, std::size_t channels, double rate, std::int64_t,
                                          const SignalInfo& like, std::vector<std::string> names) {
    switch (kind_of(p)) {
        case FileKind::npy: return std::make_unique<NpyWriter>(p, channels);
        case FileKind::csv: return std::make_unique<CsvWriter>(p, channels, names);
        case FileKind::audio: return std::make_unique<AudioWriter>(p, channels, rate, like);
    }
    return nullptr;
}

}  // namespace ssm::app
