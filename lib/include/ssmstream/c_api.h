/* ssmstream C API: opaque handles, status codes and a thread-local last error, for plugins and FFI users.
 * ssm_stream_process has the same real-time contract as ssm::Stream::process (no allocation, lock or I/O). */
#ifndef SSMSTREAM_C_API_H
#define SSMSTREAM_C_API_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ssm_model ssm_model;
typedef struct ssm_stream ssm_stream;

typedef enum {
    SSM_OK = 0,
    SSM_ERR_FORMAT = 1, /* malformed model file */
    SSM_ERR_CONFIG = 2, /* well-formed file asking for something unsupported */
    SSM_ERR_USAGE = 3,  /* wrong sample rate, block too large, bad argument */
    SSM_ERR_OTHER = 4
} ssm_status;

typedef struct {
    double sample_rate;   /* the signal's rate; 0 = trust the model */
    size_t max_block;     /* most frames per ssm_stream_process call */
    int reset_on_nonfinite; /* 0: replace NaN/Inf input by 0; 1: also zero the state */
} ssm_stream_params;

ssm_stream_params ssm_stream_default_params(void);

/* Returns NULL on failure and sets *status (if not NULL); ssm_last_error() says why. */
ssm_model* ssm_model_load(const char* path, ssm_status* status);
void ssm_model_free(ssm_model* model);
size_t ssm_model_in_channels(const ssm_model* model);
size_t ssm_model_out_channels(const ssm_model* model);
double ssm_model_sample_rate(const ssm_model* model);
size_t ssm_model_latency(const ssm_model* model);

/* A stream keeps its model alive; the model may be freed before the stream. */
ssm_stream* ssm_stream_new(const ssm_model* model, ssm_stream_params params, ssm_status* status);
void ssm_stream_free(ssm_stream* stream);
void ssm_stream_reset(ssm_stream* stream);
/* Interleaved frames; frames <= max_block. Real-time safe. */
ssm_status ssm_stream_process(ssm_stream* stream, const float* in, float* out, size_t frames);

/* The last error message of this thread ("" if none). */
const char* ssm_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
