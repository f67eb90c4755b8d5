#include "ssmstream/c_api.h"

#include <string>

#include "ssmstream/error.hpp"
#include "ssmstream/stream.hpp"

struct ssm_model {
    std::shared_ptr<const ssm::Model> model;
};
struct ssm_stream {
    ssm::Stream stream;
    std::size_t max_block;
};

namespace {
thread_local std::string last_error;

template <class F>
ssm_status guarded(ssm_status* status, F&& f) {
    ssm_status s = SSM_OK;
    try {
        f();
        last_error.clear();
    } catch (const ssm::FormatError& e) {
        last_error = e.what();
        s = SSM_ERR_FORMAT;
    } catch (const ssm::ConfigError& e) {
        last_error = e.what();
        s = SSM_ERR_CONFIG;
    } catch (const ssm::UsageError& e) {
        last_error = e.what();
        s = SSM_ERR_USAGE;
    } catch (const std::exception& e) {
        last_error = e.what();
        s = SSM_ERR_OTHER;
    }
    if (status) *status = s;
    return s;
}
}  // namespace

extern "C" {

ssm_stream_params ssm_stream_default_params(void) { return ssm_stream_params{0.0, 512, 0}; }

ssm_model* ssm_model_load(const char* path, ssm_status* status) {
    ssm_model* m = nullptr;
    guarded(status, [&] {
        if (!path) throw ssm::UsageError("ssm_model_load: path is NULL");
        m = new ssm_model{ssm::Model::load(path)};
    });
    return m;
}
void ssm_model_free(ssm_model* model) { delete model; }
size_t ssm_model_in_channels(const ssm_model* m) { return m ? m->model->info().in_channels : 0; }
size_t ssm_model_out_channels(const ssm_model* m) { return m ? m->model->info().out_channels : 0; }
double ssm_model_sample_rate(const ssm_model* m) { return m ? m->model->info().sample_rate : 0.0; }
size_t ssm_model_latency(const ssm_model* m) { return m ? m->model->info().latency_samples : 0; }

ssm_stream* ssm_stream_new(const ssm_model* model, ssm_stream_params params, ssm_status* status) {
    ssm_stream* s = nullptr;
    guarded(status, [&] {
        if (!model) throw ssm::UsageError("ssm_stream_new: model is NULL");
        ssm::Stream st(model->model, params.reset_on_nonfinite ? ssm::NonFinitePolicy::reset_state : ssm::NonFinitePolicy::zero_sample);
        st.prepare({params.sample_rate, params.max_block, 0});
        s = new ssm_stream{std::move(st), params.max_block};
    });
    return s;
}
void ssm_stream_free(ssm_stream* s) { delete s; }
void ssm_stream_reset(ssm_stream* s) {
    if (s) s->stream.reset();
}
ssm_status ssm_stream_process(ssm_stream* s, const float* in, float* out, size_t frames) {
    if (!s || (!in && frames) || (!out && frames)) return SSM_ERR_USAGE;  // no message: this may be the audio thread
    if (frames > s->max_block) return SSM_ERR_USAGE;
    s->stream.process(in, out, frames);
    return SSM_OK;
}
const char* ssm_last_error(void) { return last_error.c_str(); }

}  // extern "C"
