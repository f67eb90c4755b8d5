// ssmstream LV2 plugin: any native model file, mono and stereo variants.
//
// Threads, as the LV2 spec names them:
// - audio (run, work_response): mixes, ramps, swaps engines; never allocates, frees, locks, logs or throws.
// - worker (work): loads a model file into a new Engine (all allocation happens there) and deletes retired ones.
// - instantiation (instantiate, activate, restore, cleanup): may allocate; restore loads synchronously, as the
//   host does not run it concurrently with run().
// - save may run beside run(): it reads only the last loaded path, under a mutex that the audio thread never takes.
#include <lv2/atom/atom.h>
#include <lv2/atom/forge.h>
#include <lv2/atom/util.h>
#include <lv2/core/lv2.h>
#include <lv2/log/log.h>
#include <lv2/log/logger.h>
#include <lv2/patch/patch.h>
#include <lv2/state/state.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>

#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "engine.hpp"

namespace ssm::lv2 {
namespace {

constexpr const char* uri_mono = "urn:ssmstream:lv2:mono";
constexpr const char* uri_stereo = "urn:ssmstream:lv2:stereo";
constexpr const char* uri_model = "urn:ssmstream:lv2:model";
constexpr double ramp_seconds = 0.02;  // dry/wet, gain and bypass ramps, and the crossfade between models
constexpr std::size_t max_path = 4096;

enum Status { status_none = 0, status_running = 1, status_failed = 2 };

struct Uris {
    LV2_URID atom_Path, atom_URID, atom_Object, atom_Blank, atom_Sequence, atom_eventTransfer;
    LV2_URID patch_Set, patch_Get, patch_property, patch_value, model;
};

// Worker messages are copied by the host; they hold plain data only.
struct WorkMessage {
    enum Kind : std::uint32_t { load = 1, retire = 2 } kind;
    std::uint32_t slot;      // retire: Plugin::handed[slot] holds the engine to delete
    std::uint32_t path_size; // load: bytes of path that follow, with the terminating zero
};
struct WorkResponse {
    Engine* engine;  // null: the load failed (the worker logged why)
};

// A linear ramp toward a target, advanced once per frame.
struct Ramp {
    float value = 0, target = 0, step = 0;
    std::uint32_t left = 0;
    void snap(float t) {
        value = target = t;
        left = 0;
    }
    void set(float t, std::uint32_t frames) {
        if (t == target) return;
        target = t;
        left = std::max<std::uint32_t>(frames, 1);
        step = (target - value) / static_cast<float>(left);
    }
    float next() {
        if (left > 0 && --left == 0)
            value = target;
        else if (left > 0)
            value += step;
        return value;
    }
};

struct Plugin {
    double rate = 0;
    std::size_t channels = 1;

    LV2_URID_Map* map = nullptr;
    LV2_Worker_Schedule* schedule = nullptr;
    LV2_Log_Logger logger{};
    Uris uris{};
    LV2_Atom_Forge forge{};

    // ports
    const LV2_Atom_Sequence* control = nullptr;
    LV2_Atom_Sequence* notify = nullptr;
    std::array<const float*, 2> in{};
    std::array<float*, 2> out{};
    const float* dry_wet = nullptr;
    const float* gain_db = nullptr;
    const float* enabled = nullptr;
    float* latency = nullptr;
    float* status_port = nullptr;

    // engines: current/fading/next belong to the audio thread; restored is handed over by restore()
    Engine* current = nullptr;
    Engine* fading = nullptr;
    Engine* next = nullptr;
    std::atomic<Engine*> restored{nullptr};
    std::array<Engine*, 8> retired{};  // only without a worker: deleted outside the audio thread
    // Engines handed to the worker for deletion. Whoever takes one out of its slot deletes it: the worker, or the
    // destructor when the host dropped the message (a host may cleanup() with work still queued).
    std::array<std::atomic<Engine*>, 8> handed{};
    std::uint32_t fade_pos = 0, fade_len = 1, ramp_len = 1;
    bool started = false;
    bool announce = false;  // send the current model path on the notify port
    int status = status_none;

    Ramp mix, gain, on;
    std::array<float, max_chunk> mix_v{}, gain_v{}, on_v{}, fade_v{};
    std::array<char, sizeof(WorkMessage) + max_path> message{};

    std::mutex path_mutex;  // never taken on the audio thread
    std::string path;       // the last model loaded, for save()

    ~Plugin() {
        delete current;
        delete fading;
        delete next;
        delete restored.load();
        for (auto*& e : retired) delete std::exchange(e, nullptr);
        for (auto& e : handed) delete e.exchange(nullptr);
    }
};

LV2_URID map_uri(Plugin& p, const char* uri) { return p.map->map(p.map->handle, uri); }

void set_path(Plugin& p, const std::string& path) {
    std::lock_guard lock(p.path_mutex);
    p.path = path;
}

// Audio thread: hand an engine to the worker for deletion (or park it when there is no worker).
void retire(Plugin& p, Engine* e) noexcept {
    if (!e) return;
    if (p.schedule) {
        for (std::uint32_t i = 0; i < p.handed.size(); ++i) {
            Engine* empty = nullptr;
            if (!p.handed[i].compare_exchange_strong(empty, e)) continue;
            const WorkMessage m{WorkMessage::retire, i, 0};
            // Not scheduled: it stays in its slot and the destructor deletes it.
            p.schedule->schedule_work(p.schedule->handle, sizeof m, &m);
            return;
        }
    }
    for (auto& slot : p.retired) {
        if (!slot) {
            slot = e;
            return;
        }
    }
    // All slots full: keep it alive rather than free on the audio thread (bounded: swaps without a worker
    // come only from restore(), which empties the slots first).
}

void delete_retired(Plugin& p) {
    for (auto*& e : p.retired) delete std::exchange(e, nullptr);
}

// Audio thread: a new engine is ready; it becomes current at the next block boundary.
void offer(Plugin& p, Engine* e) noexcept {
    retire(p, std::exchange(p.next, e));
}

void swap_if_ready(Plugin& p) noexcept {
    if (!p.next || p.fading) return;
    if (!p.started) {
        retire(p, p.current);  // nothing heard yet: no crossfade needed
    } else {
        p.fading = p.current;
        p.fade_pos = 0;
    }
    p.current = std::exchange(p.next, nullptr);
    p.status = p.current->has_model() ? status_running : status_none;
    p.announce = true;
}

void request_load(Plugin& p, const char* path, std::size_t size) noexcept {
    const std::size_t n = ::strnlen(path, size);
    if (!p.schedule || n >= max_path) {
        p.status = status_failed;  // cannot load off the audio thread without a worker; too long a path
        return;
    }
    WorkMessage m{WorkMessage::load, 0, static_cast<std::uint32_t>(n + 1)};
    std::memcpy(p.message.data(), &m, sizeof m);
    std::memcpy(p.message.data() + sizeof m, path, n);
    p.message[sizeof m + n] = '\0';
    if (p.schedule->schedule_work(p.schedule->handle, static_cast<std::uint32_t>(sizeof m + n + 1), p.message.data()) !=
        LV2_WORKER_SUCCESS)
        p.status = status_failed;
}

void read_control(Plugin& p) noexcept {
    if (!p.map || !p.control) return;
    LV2_ATOM_SEQUENCE_FOREACH(p.control, ev) {
        if (ev->body.type != p.uris.atom_Object && ev->body.type != p.uris.atom_Blank) continue;
        const auto* obj = reinterpret_cast<const LV2_Atom_Object*>(&ev->body);
        if (obj->body.otype == p.uris.patch_Set) {
            const LV2_Atom* property = nullptr;
            const LV2_Atom* value = nullptr;
            lv2_atom_object_get(obj, p.uris.patch_property, &property, p.uris.patch_value, &value, 0);
            if (!property || property->type != p.uris.atom_URID ||
                reinterpret_cast<const LV2_Atom_URID*>(property)->body != p.uris.model)
                continue;
            if (!value || value->type != p.uris.atom_Path) continue;
            request_load(p, static_cast<const char*>(LV2_ATOM_BODY_CONST(value)), value->size);
        } else if (obj->body.otype == p.uris.patch_Get) {
            p.announce = true;
        }
    }
}

void write_notify(Plugin& p) noexcept {
    if (!p.map || !p.notify) return;
    const std::uint32_t capacity = p.notify->atom.size;
    lv2_atom_forge_set_buffer(&p.forge, reinterpret_cast<std::uint8_t*>(p.notify), capacity);
    LV2_Atom_Forge_Frame seq;
    lv2_atom_forge_sequence_head(&p.forge, &seq, 0);
    if (p.announce) {
        const std::string& path = p.current->path();
        LV2_Atom_Forge_Frame obj;
        lv2_atom_forge_frame_time(&p.forge, 0);
        lv2_atom_forge_object(&p.forge, &obj, 0, p.uris.patch_Set);
        lv2_atom_forge_key(&p.forge, p.uris.patch_property);
        lv2_atom_forge_urid(&p.forge, p.uris.model);
        lv2_atom_forge_key(&p.forge, p.uris.patch_value);
        lv2_atom_forge_path(&p.forge, path.c_str(), static_cast<std::uint32_t>(path.size() + 1));
        lv2_atom_forge_pop(&p.forge, &obj);
        p.announce = false;
    }
    lv2_atom_forge_pop(&p.forge, &seq);
}

// ---- LV2 entry points

LV2_Handle instantiate(double rate, const char* bundle, const LV2_Feature* const* features, std::size_t channels) {
    (void)bundle;
    auto* p = new (std::nothrow) Plugin;
    if (!p) return nullptr;
    try {
        p->rate = rate;
        p->channels = channels;
        LV2_Log_Log* log = nullptr;
        for (int i = 0; features && features[i]; ++i) {
            if (!std::strcmp(features[i]->URI, LV2_URID__map)) p->map = static_cast<LV2_URID_Map*>(features[i]->data);
            if (!std::strcmp(features[i]->URI, LV2_WORKER__schedule)) p->schedule = static_cast<LV2_Worker_Schedule*>(features[i]->data);
            if (!std::strcmp(features[i]->URI, LV2_LOG__log)) log = static_cast<LV2_Log_Log*>(features[i]->data);
        }
        lv2_log_logger_init(&p->logger, p->map, log);
        if (p->map) {
            auto& u = p->uris;
            u.atom_Path = map_uri(*p, LV2_ATOM__Path);
            u.atom_URID = map_uri(*p, LV2_ATOM__URID);
            u.atom_Object = map_uri(*p, LV2_ATOM__Object);
            u.atom_Blank = map_uri(*p, LV2_ATOM__Blank);
            u.atom_Sequence = map_uri(*p, LV2_ATOM__Sequence);
            u.atom_eventTransfer = map_uri(*p, LV2_ATOM__eventTransfer);
            u.patch_Set = map_uri(*p, LV2_PATCH__Set);
            u.patch_Get = map_uri(*p, LV2_PATCH__Get);
            u.patch_property = map_uri(*p, LV2_PATCH__property);
            u.patch_value = map_uri(*p, LV2_PATCH__value);
            u.model = map_uri(*p, uri_model);
            lv2_atom_forge_init(&p->forge, p->map);
        }
        p->fade_len = static_cast<std::uint32_t>(std::max(1.0, std::round(ramp_seconds * rate)));
        p->ramp_len = p->fade_len;
        p->current = new Engine(rate, channels);
        // Hosts without the State extension (lv2apply) can name a model in the environment.
        if (const char* env = std::getenv("SSM_LV2_MODEL"); env && *env) {
            try {
                auto* e = new Engine(env, rate, channels);
                delete std::exchange(p->current, e);
                set_path(*p, env);
                p->status = status_running;
                lv2_log_note(&p->logger, "ssmstream: loaded %s\n", e->describe().c_str());
            } catch (const std::exception& ex) {
                p->status = status_failed;
                lv2_log_error(&p->logger, "ssmstream: SSM_LV2_MODEL not loaded: %s\n", ex.what());
            }
        }
        return p;
    } catch (const std::exception& ex) {
        std::fprintf(stderr, "ssmstream: instantiate failed: %s\n", ex.what());
        delete p;
        return nullptr;
    }
}

LV2_Handle instantiate_mono(const LV2_Descriptor*, double rate, const char* bundle, const LV2_Feature* const* features) {
    return instantiate(rate, bundle, features, 1);
}
LV2_Handle instantiate_stereo(const LV2_Descriptor*, double rate, const char* bundle, const LV2_Feature* const* features) {
    return instantiate(rate, bundle, features, 2);
}

void connect_port(LV2_Handle h, std::uint32_t port, void* data) {
    auto& p = *static_cast<Plugin*>(h);
    const auto ch = static_cast<std::uint32_t>(p.channels);
    if (port == 0) p.control = static_cast<const LV2_Atom_Sequence*>(data);
    else if (port == 1) p.notify = static_cast<LV2_Atom_Sequence*>(data);
    else if (port < 2 + ch) p.in[port - 2] = static_cast<const float*>(data);
    else if (port < 2 + 2 * ch) p.out[port - 2 - ch] = static_cast<float*>(data);
    else if (port == 2 + 2 * ch) p.dry_wet = static_cast<const float*>(data);
    else if (port == 3 + 2 * ch) p.gain_db = static_cast<const float*>(data);
    else if (port == 4 + 2 * ch) p.enabled = static_cast<const float*>(data);
    else if (port == 5 + 2 * ch) p.latency = static_cast<float*>(data);
    else if (port == 6 + 2 * ch) p.status_port = static_cast<float*>(data);
}

void activate(LV2_Handle h) {
    auto& p = *static_cast<Plugin*>(h);
    delete_retired(p);
    p.current->reset();
    if (p.fading) {
        delete p.fading;
        p.fading = nullptr;
    }
    p.started = false;
}

float target_mix(const Plugin& p) { return p.dry_wet ? std::clamp(*p.dry_wet, 0.0f, 1.0f) : 1.0f; }
float target_gain(const Plugin& p) {
    const float db = p.gain_db ? std::clamp(*p.gain_db, -60.0f, 24.0f) : 0.0f;
    return db == 0.0f ? 1.0f : std::pow(10.0f, db / 20.0f);
}
float target_on(const Plugin& p) { return !p.enabled || *p.enabled > 0.5f ? 1.0f : 0.0f; }

void run(LV2_Handle h, std::uint32_t frames) {
    auto& p = *static_cast<Plugin*>(h);
#if defined(__SSE__)
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);  // flush denormals to zero: decaying states must not slow the block down
#endif
    if (Engine* r = p.restored.exchange(nullptr, std::memory_order_acq_rel)) offer(p, r);
    read_control(p);
    swap_if_ready(p);
    if (!p.started) {
        p.mix.snap(target_mix(p));
        p.gain.snap(target_gain(p));
        p.on.snap(target_on(p));
    } else {
        p.mix.set(target_mix(p), p.ramp_len);
        p.gain.set(target_gain(p), p.ramp_len);
        p.on.set(target_on(p), p.ramp_len);
    }
    const std::size_t ch = p.channels;
    for (std::uint32_t off = 0; off < frames;) {
        const auto n = static_cast<std::uint32_t>(std::min<std::size_t>(frames - off, max_chunk));
        std::array<const float*, 2> in{};
        for (std::size_t c = 0; c < ch; ++c) in[c] = p.in[c] + off;
        p.current->process(in.data(), n);
        if (p.fading) p.fading->process(in.data(), n);
        for (std::uint32_t i = 0; i < n; ++i) {
            p.mix_v[i] = p.mix.next();
            p.gain_v[i] = p.gain.next();
            p.on_v[i] = p.on.next();
            p.fade_v[i] = p.fading ? std::min(1.0f, static_cast<float>(p.fade_pos + i + 1) / static_cast<float>(p.fade_len)) : 1.0f;
        }
        for (std::size_t c = 0; c < ch; ++c) {
            const float* wet = p.current->wet(c);
            const float* dry = p.current->dry(c);
            const float* wet_old = p.fading ? p.fading->wet(c) : wet;
            const float* dry_old = p.fading ? p.fading->dry(c) : dry;
            float* o = p.out[c] + off;
            for (std::uint32_t i = 0; i < n; ++i) {
                const float g = p.fade_v[i];
                const float w = g == 1.0f ? wet[i] : g * wet[i] + (1 - g) * wet_old[i];
                const float d = g == 1.0f ? dry[i] : g * dry[i] + (1 - g) * dry_old[i];
                const float processed = p.gain_v[i] * (p.mix_v[i] * w + (1 - p.mix_v[i]) * d);
                o[i] = p.on_v[i] == 1.0f ? processed : p.on_v[i] * processed + (1 - p.on_v[i]) * d;
            }
        }
        if (p.fading) {
            p.fade_pos += n;
            if (p.fade_pos >= p.fade_len) {
                retire(p, std::exchange(p.fading, nullptr));
                swap_if_ready(p);  // a model that arrived during the fade
            }
        }
        off += n;
    }
    p.started = frames > 0 || p.started;
    if (p.latency) *p.latency = static_cast<float>(p.current->latency());
    if (p.status_port) *p.status_port = static_cast<float>(p.status);
    write_notify(p);
#if defined(__SSE__)
    _mm_setcsr(csr);
#endif
}

void deactivate(LV2_Handle) {}

void cleanup(LV2_Handle h) { delete static_cast<Plugin*>(h); }

// ---- Worker

LV2_Worker_Status work(LV2_Handle h, LV2_Worker_Respond_Function respond, LV2_Worker_Respond_Handle rh, std::uint32_t size,
                       const void* data) {
    auto& p = *static_cast<Plugin*>(h);
    if (size < sizeof(WorkMessage)) return LV2_WORKER_ERR_UNKNOWN;
    WorkMessage m;
    std::memcpy(&m, data, sizeof m);
    if (m.kind == WorkMessage::retire) {
        if (m.slot >= p.handed.size()) return LV2_WORKER_ERR_UNKNOWN;
        delete p.handed[m.slot].exchange(nullptr);
        return LV2_WORKER_SUCCESS;
    }
    if (m.kind != WorkMessage::load || size < sizeof m + m.path_size || m.path_size == 0) return LV2_WORKER_ERR_UNKNOWN;
    const std::string path(static_cast<const char*>(data) + sizeof m, ::strnlen(static_cast<const char*>(data) + sizeof m, m.path_size));
    WorkResponse r{nullptr};
    try {
        r.engine = path.empty() ? new Engine(p.rate, p.channels) : new Engine(path, p.rate, p.channels);
        set_path(p, path);
        lv2_log_note(&p.logger, "ssmstream: loaded %s\n", r.engine->describe().c_str());
    } catch (const std::exception& ex) {
        lv2_log_error(&p.logger, "ssmstream: model not loaded (the previous one keeps running): %s\n", ex.what());
    }
    if (respond(rh, sizeof r, &r) != LV2_WORKER_SUCCESS) delete r.engine;
    return LV2_WORKER_SUCCESS;
}

LV2_Worker_Status work_response(LV2_Handle h, std::uint32_t size, const void* data) {
    auto& p = *static_cast<Plugin*>(h);
    if (size < sizeof(WorkResponse)) return LV2_WORKER_ERR_UNKNOWN;
    WorkResponse r;
    std::memcpy(&r, data, sizeof r);
    if (r.engine)
        offer(p, r.engine);
    else
        p.status = status_failed;
    return LV2_WORKER_SUCCESS;
}

// ---- State: the model path (abstract, through the host's mapPath where given)

template <class T>
T* feature(const LV2_Feature* const* features, const char* uri) {
    for (int i = 0; features && features[i]; ++i)
        if (!std::strcmp(features[i]->URI, uri)) return static_cast<T*>(features[i]->data);
    return nullptr;
}

void free_host_path(const LV2_Feature* const* features, char* s) {
    if (auto* fp = feature<LV2_State_Free_Path>(features, LV2_STATE__freePath))
        fp->free_path(fp->handle, s);
    else
        std::free(s);
}

LV2_State_Status save(LV2_Handle h, LV2_State_Store_Function store, LV2_State_Handle sh, std::uint32_t, const LV2_Feature* const* features) {
    auto& p = *static_cast<Plugin*>(h);
    if (!p.map) return LV2_STATE_ERR_NO_FEATURE;
    std::string path;
    {
        std::lock_guard lock(p.path_mutex);
        path = p.path;
    }
    if (path.empty()) return LV2_STATE_SUCCESS;
    if (auto* mp = feature<LV2_State_Map_Path>(features, LV2_STATE__mapPath)) {
        if (char* a = mp->abstract_path(mp->handle, path.c_str())) {
            path = a;
            free_host_path(features, a);
        }
    }
    return store(sh, p.uris.model, path.c_str(), path.size() + 1, p.uris.atom_Path, LV2_STATE_IS_POD | LV2_STATE_IS_PORTABLE);
}

LV2_State_Status restore(LV2_Handle h, LV2_State_Retrieve_Function retrieve, LV2_State_Handle sh, std::uint32_t,
                         const LV2_Feature* const* features) {
    auto& p = *static_cast<Plugin*>(h);
    if (!p.map) return LV2_STATE_ERR_NO_FEATURE;
    std::size_t size = 0;
    std::uint32_t type = 0, flags = 0;
    const void* value = retrieve(sh, p.uris.model, &size, &type, &flags);
    if (!value) return LV2_STATE_SUCCESS;  // a state without a model: keep what runs
    if (type != p.uris.atom_Path) return LV2_STATE_ERR_BAD_TYPE;
    std::string path(static_cast<const char*>(value), ::strnlen(static_cast<const char*>(value), size));
    if (auto* mp = feature<LV2_State_Map_Path>(features, LV2_STATE__mapPath)) {
        if (char* a = mp->absolute_path(mp->handle, path.c_str())) {
            path = a;
            free_host_path(features, a);
        }
    }
    delete_retired(p);  // not concurrent with run(): the spec's instantiation class
    try {
        auto* e = path.empty() ? new Engine(p.rate, p.channels) : new Engine(path, p.rate, p.channels);
        set_path(p, path);
        lv2_log_note(&p.logger, "ssmstream: restored %s\n", e->describe().c_str());
        delete p.restored.exchange(e, std::memory_order_acq_rel);
        return LV2_STATE_SUCCESS;
    } catch (const std::exception& ex) {
        p.status = status_failed;
        lv2_log_error(&p.logger, "ssmstream: model in the saved state not loaded: %s\n", ex.what());
        return LV2_STATE_ERR_UNKNOWN;
    }
}

const void* extension_data(const char* uri) {
    static const LV2_State_Interface state{save, restore};
    static const LV2_Worker_Interface worker{work, work_response, nullptr};
    if (!std::strcmp(uri, LV2_STATE__interface)) return &state;
    if (!std::strcmp(uri, LV2_WORKER__interface)) return &worker;
    return nullptr;
}

const LV2_Descriptor descriptors[] = {
    {uri_mono, instantiate_mono, connect_port, activate, run, deactivate, cleanup, extension_data},
    {uri_stereo, instantiate_stereo, connect_port, activate, run, deactivate, cleanup, extension_data},
};

}  // namespace
}  // namespace ssm::lv2

extern "C" LV2_SYMBOL_EXPORT const LV2_Descriptor* lv2_descriptor(std::uint32_t index) {
    return index < std::size(ssm::lv2::descriptors) ? &ssm::lv2::descriptors[index] : nullptr;
}
