#pragma once
// The layer interface (internal). Kept as small as RTNeural's: widths, state size, a block-wise `step` for the
// recurrent view and `make_runner` for the whole-chunk (batch) view. Layers are immutable once built; all
// mutable state lives in the caller's buffers, which is what lets one Model serve many Streams.
#include <cstddef>
#include <algorithm>
#include <memory>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ssmstream/batch.hpp"
#include "ops/weights.hpp"
#include "ssmstream/tensor_file.hpp"

namespace ssm::detail {

class ThreadPool;

/** Hands a layer its tensors by name, checks shapes, and remembers which were used (surplus tensors are errors). */
class Params {
public:
    Params(const TensorFile& file, std::string prefix = {});
    /** The tensor `prefix + name` as float64, C order, with `shape`; a -1 in `shape` matches any size.
     * An extra trailing dimension of 1 (Conv1d k=1 weights) is accepted when `allow_trailing_one`. */
    std::vector<double> take(const std::string& name, const std::vector<std::int64_t>& shape,
                             bool allow_trailing_one = false);
    /** As take(), converted straight to float32 (large weights: no float64 copy). */
    std::vector<float> take_floats(const std::string& name, const std::vector<std::int64_t>& shape,
                                   bool allow_trailing_one = false);
    /** A [rows, cols] matrix as stored: a BF16 tensor stays BF16 (exact), any other dtype becomes float32. */
    Weights take_weights(const std::string& name, std::int64_t rows, std::int64_t cols, bool allow_trailing_one = false);
    bool has(const std::string& name) const;
    const TensorView& view(const std::string& name) const;
    /** Names of tensors in the file that no layer took. */
    std::vector<std::string> unused() const;
    const std::string& label() const { return file_.label(); }

private:
    const TensorView& checked(const std::string& name, const std::vector<std::int64_t>& shape, bool allow_trailing_one) const;
    const TensorFile& file_;
    std::vector<std::string>* used_;
    std::shared_ptr<std::vector<std::string>> used_store_;
};

/** Scratch shared by all runners of one Batch. Layers run one after another, so a runner's buffers only need to
 * be distinct from those of its enclosing runners: each reserves a slice above its parent's, and the Batch
 * allocates the high-water mark once. */
template <class T, std::size_t Align>
struct AlignedAllocator {
    using value_type = T;
    template <class U>
    struct rebind { using other = AlignedAllocator<U, Align>; };
    AlignedAllocator() = default;
    template <class U>
    AlignedAllocator(const AlignedAllocator<U, Align>&) noexcept {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{Align})); }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t{Align}); }
    template <class U>
    bool operator==(const AlignedAllocator<U, Align>&) const noexcept { return true; }
};

struct Workspace {
    static constexpr std::size_t kAlignFloats = 16;  ///< every slice starts on a 64-byte boundary (FFTW, SIMD)
    std::vector<float, AlignedAllocator<float, 64>> buf;
    std::size_t high_water = 0;
    /** A slice reserved at construction, resolved at run time (after the Batch allocated `buf`). */
    struct Slice {
        Workspace* ws = nullptr;
        std::size_t offset = 0;
        float* get() const noexcept { return ws->buf.data() + offset; }
    };
};

struct BatchContext {
    ThreadPool& pool;
    const BatchOptions& options;
    Workspace& ws;
    std::size_t offset = 0;  ///< where this runner's slices start; children start above their parent's

    /** Reserves `floats` at the current offset and moves it up (children constructed after see the new offset). */
    Workspace::Slice reserve(std::size_t floats) {
        offset = (offset + Workspace::kAlignFloats - 1) / Workspace::kAlignFloats * Workspace::kAlignFloats;
        Workspace::Slice s{&ws, offset};
        offset += floats;
        ws.high_water = std::max(ws.high_water, offset);
        return s;
    }
};

/** A layer's whole-chunk executor inside one Batch: owns plans, buffers and the layer's state for that Batch. */
class LayerRunner {
public:
    virtual ~LayerRunner() = default;
    /** `frames` ≤ options.chunk_frames rows in → out (distinct buffers). */
    virtual void run(const float* in, float* out, std::size_t frames) = 0;
    virtual void reset() = 0;
    /** The state in the recurrent layout of `Layer::step` (interchangeable with Stream). */
    virtual void save(float* dst) const = 0;
    virtual void load(const float* src) = 0;
    virtual void collect_plans(std::vector<LayerPlan>& plans) const = 0;
};

class Layer {
public:
    virtual ~Layer() = default;
    virtual std::size_t in_width() const noexcept = 0;
    virtual std::size_t out_width() const noexcept = 0;
    /** Largest activation width inside the layer (≥ in and out). */
    virtual std::size_t max_width() const noexcept { return std::max(in_width(), out_width()); }
    /** Recurrent state, in floats. */
    virtual std::size_t state_size() const noexcept { return 0; }
    /** Scratch `step` needs for blocks of up to `max_block` frames, in floats. */
    virtual std::size_t scratch_size(std::size_t /*max_block*/) const noexcept { return 0; }
    virtual std::size_t param_count() const noexcept = 0;
    /** Bytes the layer's weights occupy in memory (float32 unless a layer keeps a checkpoint's BF16 as such). */
    virtual std::size_t weight_bytes() const noexcept { return param_count() * sizeof(float); }
    /** One line for `ssm info`. */
    virtual std::string describe() const = 0;
    /** Lines for nested layers (indented by the caller). */
    virtual void describe_into(std::vector<std::string>& lines, const std::string& indent) const {
        lines.push_back(indent + describe());
    }

    /** The recurrent view over a block: rows of `in_width` → rows of `out_width`, `in` != `out`. Real-time safe.
     * The result for each frame is bit-identical whatever the block size. */
    virtual void step(const float* in, float* out, std::size_t frames, float* state, float* scratch) const noexcept = 0;

    /** The whole-chunk view for a Batch. The default runs `step` (split across threads if stateless). */
    virtual std::unique_ptr<LayerRunner> make_runner(BatchContext& ctx) const;
};

/** Builds a layer (and its children) from its config object, taking its tensors. Throws ConfigError/FormatError. */
std::unique_ptr<Layer> make_layer(const nlohmann::json& config, Params& params, std::size_t in_width);

// Per-family constructors (one file each in layers/). The registry in registry.cpp maps "type" to them.
std::unique_ptr<Layer> make_linear(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_layernorm(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_batchnorm(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_activation(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_glu(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_s4d(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_residual(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_sos(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_lru(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_s5(const nlohmann::json& c, Params& p, std::size_t in_width); 
std::unique_ptr<Layer> make_dss(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_ema(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_s4(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_hippo(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_h3(const nlohmann::json& c, Params& p, std::size_t in_width);
std::unique_ptr<Layer> make_gss(const nlohmann::json& c, Params& p, std::size_t in_width);

/** Config helpers: a clear ConfigError naming the layer and field when a value is missing or has the wrong type. */
std::size_t get_size(const nlohmann::json& c, const char* key, std::size_t fallback = 0, bool required = true);
std::string get_string(const nlohmann::json& c, const char* key, const std::string& fallback, bool required = false);
double get_number(const nlohmann::json& c, const char* key, double fallback);
bool get_bool(const nlohmann::json& c, const char* key, bool fallback);
std::string layer_label(const nlohmann::json& c);
/** Fails if `c` has keys outside `known` — an unknown field may change the maths, so it is never ignored. */
void check_fields(const nlohmann::json& c, std::initializer_list<const char*> known);

}  // namespace ssm::detail
