#pragma once
// A small reader for PhysioNet WFDB records (header + one signal file), enough for `ssm-monitor replay`:
// formats 212 (MIT-BIH, two 12-bit samples in 3 bytes), 16 (int16 LE) and 80 (8-bit offset binary), all signals
// interleaved in one .dat file. Samples are converted to physical units: (adc − baseline) / gain; WFDB's invalid-sample
// code (−2048 in 212, −32768 in 16, −128 in 80) becomes NaN, as in the `wfdb` Python package.
#include <filesystem>
#include <string>
#include <vector>

namespace ssm::monitor {

struct WfdbRecord {
    std::string name;
    double sample_rate = 0;
    std::size_t channels = 0, frames = 0;
    std::vector<std::string> names, units;
    std::vector<float> samples;  // frames × channels, physical units
};

/** Reads `path` (the .hea file, or the record path without extension). At most `max_frames` frames (0 = all).
 * Throws ssm::UsageError naming the file and the fault (missing file, unsupported format, bad header line,
 * signal file shorter than the header says — then it reads what is there and says so only if nothing is). */
WfdbRecord read_wfdb(const std::filesystem::path& path, std::size_t max_frames = 0);

}  // namespace ssm::monitor
