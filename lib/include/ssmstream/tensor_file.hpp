#pragma once
/** @file Reading and writing safetensors files: the container of the native model format.
 *
 * The reader memory-maps the file and validates everything before any tensor is used: the header length is
 * bounded, the header is well-formed UTF-8 JSON without duplicate keys, every dtype is known, every shape times the
 * dtype size equals its byte length, and the data offsets are in bounds, ordered, contiguous and non-overlapping.
 * Any fault throws `ssm::FormatError` naming the file, the tensor and the fault.
 */
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ssm {

/** Element types of the native format; all little-endian. */
enum class DType { F16, BF16, F32, F64 };

/** "F32" → DType::F32; throws FormatError for an unknown name. */
DType dtype_from_string(std::string_view name);
std::string_view to_string(DType dtype) noexcept;
std::size_t dtype_size(DType dtype) noexcept;

/** A tensor inside a mapped file: a view, valid as long as its TensorFile lives. */
struct TensorView {
    std::string name;
    DType dtype{};
    std::vector<std::int64_t> shape;
    std::span<const std::byte> bytes;

    std::size_t numel() const noexcept;
};

/** A validated, read-only safetensors file (memory-mapped, or a private copy for in-memory input). */
class TensorFile {
public:
    /** Maps and validates `path`. The label used in error messages is the path. */
    static TensorFile open(const std::filesystem::path& path);
    /** Validates a copy of `data`; `label` names it in error messages (fuzzing, tests, network input). */
    static TensorFile from_bytes(std::span<const std::byte> data, std::string label);
    /** A file made of other files' tensors, without copying them: `tensors` are views into `sources` (renamed as
     * given; one source tensor may appear under several names), kept alive by the new file. Names must be unique. */
    static TensorFile compose(std::string label, std::map<std::string, std::string> metadata, std::vector<TensorView> tensors,
                              std::vector<TensorFile> sources);

    TensorFile(TensorFile&&) noexcept;
    TensorFile& operator=(TensorFile&&) noexcept;
    ~TensorFile();

    const std::string& label() const noexcept { return label_; }
    /** The header's `__metadata__` (string → string), empty if absent. */
    const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
    /** Tensors in file order (ascending offsets). */
    const std::vector<TensorView>& tensors() const noexcept { return tensors_; }
    /** The tensor called `name`, or nullptr. */
    const TensorView* find(std::string_view name) const noexcept;

    /** Converts any dtype to float32 / float64 (a copy, C order). */
    static std::vector<float> to_float(const TensorView& t);
    static std::vector<double> to_double(const TensorView& t);

private:
    struct Storage;
    TensorFile() = default;
    void parse();

    std::string label_;
    std::unique_ptr<Storage> storage_;
    std::span<const std::byte> data_;
    std::map<std::string, std::string> metadata_;
    std::vector<TensorView> tensors_;
};

/** A tensor to write: float32 or float64 data in C order, stored as `dtype`. */
struct TensorData {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<double> values;
    DType dtype = DType::F32;
};

/** Serialises a safetensors file to bytes (header padded to 8 bytes, tensors in the given order). */
std::vector<std::byte> encode_safetensors(const std::map<std::string, std::string>& metadata,
                                          const std::vector<TensorData>& tensors);

/** Writes a safetensors file atomically: to a temporary file beside `path`, then renamed over it. */
void write_safetensors(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata,
                       const std::vector<TensorData>& tensors);

/** Writes `bytes` to `path` through a temporary file and a rename, so a failure never leaves half a file. */
void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes);

}  // namespace ssm
