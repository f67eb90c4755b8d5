#pragma once
// A minimal in-process LV2 host for the plugin's tests and benchmark: loads the plugin binary with dlopen, maps
// URIDs, runs the Worker when the test says so (work() as the "worker thread", work_response() in the audio context
// before run()), captures the log, and owns every port buffer. Nothing on run()'s path here allocates: the worker
// queues and the atom buffers are preallocated, so an allocation counted during run() is the plugin's.
#include <dlfcn.h>
#include <lv2/atom/atom.h>
#include <lv2/atom/forge.h>
#include <lv2/atom/util.h>
#include <lv2/core/lv2.h>
#include <lv2/log/log.h>
#include <lv2/patch/patch.h>
#include <lv2/state/state.h>
#include <lv2/urid/urid.h>
#include <lv2/worker/worker.h>

#include <array>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace ssm::test {

/** A saved plugin state: key → (value type, value bytes). */
using State = std::map<std::uint32_t, std::pair<std::uint32_t, std::string>>;

class Lv2Host {
public:
    static constexpr std::size_t max_frames = 4096;

    Lv2Host(const std::string& so_path, const std::string& uri, double rate, bool with_worker = true) {
        lib_ = ::dlopen(so_path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!lib_) {
            error = ::dlerror();
            return;
        }
        auto fn = reinterpret_cast<const LV2_Descriptor* (*)(std::uint32_t)>(::dlsym(lib_, "lv2_descriptor"));
        for (std::uint32_t i = 0; fn && (desc_ = fn(i)); ++i)
            if (uri == desc_->URI) break;
        if (!desc_) {
            error = "no plugin " + uri;
            return;
        }
        channels = uri.find("stereo") != std::string::npos ? 2 : 1;
        map_ = {this, &Lv2Host::map_uri};
        unmap_ = {this, &Lv2Host::unmap_uri};
        log_ = {this, &Lv2Host::log_printf, &Lv2Host::log_vprintf};
        schedule_ = {this, &Lv2Host::schedule_work};
        f_map_ = {LV2_URID__map, &map_};
        f_unmap_ = {LV2_URID__unmap, &unmap_};
        f_log_ = {LV2_LOG__log, &log_};
        f_schedule_ = {LV2_WORKER__schedule, &schedule_};
        features_ = {&f_map_, &f_unmap_, &f_log_};
        if (with_worker) features_.push_back(&f_schedule_);
        features_.push_back(nullptr);
        for (const char* u : {LV2_ATOM__Path, LV2_ATOM__URID, LV2_ATOM__Sequence, LV2_ATOM__Chunk, LV2_PATCH__Set,
                              LV2_PATCH__property, LV2_PATCH__value, "urn:ssmstream:lv2:model"})
            map_uri(this, u);
        lv2_atom_forge_init(&forge_, &map_);
        handle_ = desc_->instantiate(desc_, rate, "", features_.data());
        if (!handle_) {
            error = "instantiate failed: " + log;
            return;
        }
        if (desc_->extension_data) {
            worker_ = static_cast<const LV2_Worker_Interface*>(desc_->extension_data(LV2_WORKER__interface));
            state_ = static_cast<const LV2_State_Interface*>(desc_->extension_data(LV2_STATE__interface));
        }
        in.assign(channels, std::vector<float>(max_frames, 0.0f));
        out.assign(channels, std::vector<float>(max_frames, 0.0f));
        clear_control();
        desc_->connect_port(handle_, 0, control_.data());
        desc_->connect_port(handle_, 1, notify_.data());
        const auto ch = static_cast<std::uint32_t>(channels);
        for (std::uint32_t c = 0; c < ch; ++c) {
            desc_->connect_port(handle_, 2 + c, in[c].data());
            desc_->connect_port(handle_, 2 + ch + c, out[c].data());
        }
        desc_->connect_port(handle_, 2 + 2 * ch, &dry_wet);
        desc_->connect_port(handle_, 3 + 2 * ch, &gain_db);
        desc_->connect_port(handle_, 4 + 2 * ch, &enabled);
        desc_->connect_port(handle_, 5 + 2 * ch, &latency);
        desc_->connect_port(handle_, 6 + 2 * ch, &status);
        desc_->activate(handle_);
    }
    ~Lv2Host() {
        if (handle_) {
            desc_->deactivate(handle_);
            desc_->cleanup(handle_);
        }
        if (lib_) ::dlclose(lib_);
    }
    Lv2Host(const Lv2Host&) = delete;
    Lv2Host& operator=(const Lv2Host&) = delete;

    bool ok() const { return handle_ != nullptr; }

    /** Audio context: deliver worker responses, then run `frames` frames of `in` into `out`. */
    void run(std::uint32_t frames) {
        for (std::size_t i = 0; i < responses_n_; ++i) worker_->work_response(handle_, responses_[i].size, responses_[i].data.data());
        responses_n_ = 0;
        auto* notify = reinterpret_cast<LV2_Atom_Sequence*>(notify_.data());
        notify->atom.type = urid(LV2_ATOM__Chunk);
        notify->atom.size = static_cast<std::uint32_t>(notify_.size() - sizeof(LV2_Atom));
        desc_->run(handle_, frames);
        clear_control();
    }
    /** Worker context: run the work the plugin scheduled. Returns how many items ran. */
    std::size_t work() {
        std::size_t n = work_n_;
        for (std::size_t i = 0; i < work_n_; ++i) worker_->work(handle_, &Lv2Host::respond, this, work_[i].size, work_[i].data.data());
        work_n_ = 0;
        return n;
    }
    /** Puts a patch:Set of the model path into the control port for the next run(). */
    void set_model(const std::string& path) {
        lv2_atom_forge_set_buffer(&forge_, control_.data(), control_.size());
        LV2_Atom_Forge_Frame seq, obj;
        lv2_atom_forge_sequence_head(&forge_, &seq, 0);
        lv2_atom_forge_frame_time(&forge_, 0);
        lv2_atom_forge_object(&forge_, &obj, 0, urid(LV2_PATCH__Set));
        lv2_atom_forge_key(&forge_, urid(LV2_PATCH__property));
        lv2_atom_forge_urid(&forge_, urid("urn:ssmstream:lv2:model"));
        lv2_atom_forge_key(&forge_, urid(LV2_PATCH__value));
        lv2_atom_forge_path(&forge_, path.c_str(), static_cast<std::uint32_t>(path.size() + 1));
        lv2_atom_forge_pop(&forge_, &obj);
        lv2_atom_forge_pop(&forge_, &seq);
    }
    /** Loads a model the way a host does when the user picks a file: patch:Set, run, work, run. */
    void load_model(const std::string& path, std::uint32_t frames = 64) {
        set_model(path);
        run(frames);
        work();
        run(frames);
    }
    /** The model path on the notify port after the last run(), or "" if none was sent. */
    std::string notified_path() const {
        const auto* seq = reinterpret_cast<const LV2_Atom_Sequence*>(notify_.data());
        std::string found;
        LV2_ATOM_SEQUENCE_FOREACH(seq, ev) {
            const auto* obj = reinterpret_cast<const LV2_Atom_Object*>(&ev->body);
            const LV2_Atom* value = nullptr;
            lv2_atom_object_get(obj, map_.map(map_.handle, LV2_PATCH__value), &value, 0);
            if (value) found = static_cast<const char*>(LV2_ATOM_BODY_CONST(value));
        }
        return found;
    }

    /** State save into a map, and restore from one (absolute paths: no mapPath feature). */
    State save() {
        State st;
        state_->save(handle_, &Lv2Host::store, &st, LV2_STATE_IS_POD, features_.data());
        return st;
    }
    int restore(State& st) {
        return state_->restore(handle_, &Lv2Host::retrieve, &st, 0, features_.data());
    }

    LV2_URID urid(const char* uri) { return map_uri(this, uri); }

    std::size_t channels = 1;
    std::vector<std::vector<float>> in, out;
    float dry_wet = 1.0f, gain_db = 0.0f, enabled = 1.0f, latency = -1.0f, status = -1.0f;
    std::string log;
    std::string error;

private:
    struct Slot {
        std::uint32_t size = 0;
        std::array<char, 8192> data{};
    };

    void clear_control() {
        auto* seq = reinterpret_cast<LV2_Atom_Sequence*>(control_.data());
        seq->atom.type = urid(LV2_ATOM__Sequence);
        seq->atom.size = sizeof(LV2_Atom_Sequence_Body);
        seq->body.unit = 0;
        seq->body.pad = 0;
    }

    static LV2_URID map_uri(LV2_URID_Map_Handle h, const char* uri) {
        auto* self = static_cast<Lv2Host*>(h);
        for (std::size_t i = 0; i < self->uris_.size(); ++i)
            if (self->uris_[i] == uri) return static_cast<LV2_URID>(i + 1);
        self->uris_.emplace_back(uri);
        return static_cast<LV2_URID>(self->uris_.size());
    }
    static const char* unmap_uri(LV2_URID_Unmap_Handle h, LV2_URID id) {
        auto* self = static_cast<Lv2Host*>(h);
        return id >= 1 && id <= self->uris_.size() ? self->uris_[id - 1].c_str() : nullptr;
    }
    static int log_vprintf(LV2_Log_Handle h, LV2_URID, const char* fmt, va_list ap) {
        char buf[2048];
        const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
        static_cast<Lv2Host*>(h)->log += buf;
        return n;
    }
    static int log_printf(LV2_Log_Handle h, LV2_URID type, const char* fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        const int n = log_vprintf(h, type, fmt, ap);
        va_end(ap);
        return n;
    }
    static LV2_Worker_Status schedule_work(LV2_Worker_Schedule_Handle h, std::uint32_t size, const void* data) {
        auto* self = static_cast<Lv2Host*>(h);
        if (self->work_n_ == self->work_.size() || size > self->work_[0].data.size()) return LV2_WORKER_ERR_NO_SPACE;
        auto& s = self->work_[self->work_n_++];
        s.size = size;
        std::memcpy(s.data.data(), data, size);
        return LV2_WORKER_SUCCESS;
    }
    static LV2_Worker_Status respond(LV2_Worker_Respond_Handle h, std::uint32_t size, const void* data) {
        auto* self = static_cast<Lv2Host*>(h);
        if (self->responses_n_ == self->responses_.size() || size > self->responses_[0].data.size()) return LV2_WORKER_ERR_NO_SPACE;
        auto& s = self->responses_[self->responses_n_++];
        s.size = size;
        std::memcpy(s.data.data(), data, size);
        return LV2_WORKER_SUCCESS;
    }
    static LV2_State_Status store(LV2_State_Handle h, std::uint32_t key, const void* value, std::size_t size, std::uint32_t type,
                                  std::uint32_t) {
        (*static_cast<State*>(h))[key] = {type, std::string(static_cast<const char*>(value), size)};
        return LV2_STATE_SUCCESS;
    }
    static const void* retrieve(LV2_State_Handle h, std::uint32_t key, std::size_t* size, std::uint32_t* type, std::uint32_t* flags) {
        auto& st = *static_cast<State*>(h);
        auto it = st.find(key);
        if (it == st.end()) return nullptr;
        *size = it->second.second.size();
        *type = it->second.first;
        *flags = LV2_STATE_IS_POD;
        return it->second.second.data();
    }

    void* lib_ = nullptr;
    const LV2_Descriptor* desc_ = nullptr;
    LV2_Handle handle_ = nullptr;
    const LV2_Worker_Interface* worker_ = nullptr;
    const LV2_State_Interface* state_ = nullptr;
    std::vector<std::string> uris_;
    LV2_URID_Map map_{};
    LV2_URID_Unmap unmap_{};
    LV2_Log_Log log_{};
    LV2_Worker_Schedule schedule_{};
    LV2_Feature f_map_{}, f_unmap_{}, f_log_{}, f_schedule_{};
    std::vector<const LV2_Feature*> features_;
    LV2_Atom_Forge forge_{};
    alignas(8) std::array<std::uint8_t, 8192> control_{};
    alignas(8) std::array<std::uint8_t, 8192> notify_{};
    std::array<Slot, 16> work_{}, responses_{};
    std::size_t work_n_ = 0, responses_n_ = 0;
};

}  // namespace ssm::test
