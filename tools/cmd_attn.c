/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_attn.c: `forge attn`, one attention layer on tensors from safetensors
 * files. Every dimension the tensors determine is read from their shapes:
 * hidden = columns of q_proj.weight, head_dim = its rows / --heads, kv_heads =
 * rows of k_proj.weight / head_dim. The weights and x share one dtype; y gets
 * x's shape and dtype. Each sequence of x attends to its own tokens, which sit
 * at positions pos0 .. pos0+seq-1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"

#define CMD "attn"

enum { W_Q, W_K, W_V, W_O, B_Q, B_K, B_V, B_O, N_WEIGHTS };
static const char *const weight_names[N_WEIGHTS] = {
    "q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight",
    "q_proj.bias",   "k_proj.bias",   "v_proj.bias",   "o_proj.bias",
};

typedef struct {
    forge_tensor t[N_WEIGHTS];
    int present[N_WEIGHTS];
} attn_weights;

/* Finds prefix+name; biases may be absent. Returns the exit code on error. */
static int find_weights(forge_safetensors *st, const char *prefix, attn_weights *w) {
    for (int i = 0; i < N_WEIGHTS; i++) {
        char name[512];
        if (snprintf(name, sizeof name, "%s%s", prefix, weight_names[i]) >= (int)sizeof name)
            return cli_error(CMD, "--prefix '%s' is too long", prefix);
        forge_status s = forge_st_find(st, name, &w->t[i]);
        w->present[i] = s == FORGE_OK;
        if (!w->present[i] && i < B_Q)
            return cli_error(CMD, "the weights file has no tensor \"%s\"", name);
    }
    return 0;
}

/* The tensor must be [rows] (cols < 0) or [rows, cols]. */
static int check_shape(const forge_tensor *t, int64_t rows, int64_t cols) {
    int ndim = cols < 0 ? 1 : 2;
    if (t->ndim == ndim && t->shape[0] == rows && (ndim == 1 || t->shape[1] == cols)) return 0;
    char got[96] = "", *p = got;
    for (int d = 0; d < t->ndim && p < got + sizeof got - 24; d++)
        p += sprintf(p, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (cols < 0) return cli_error(CMD, "%s has shape [%s], expected [%lld]", t->name, got, (long long)rows);
    return cli_error(CMD, "%s has shape [%s], expected [%lld, %lld]", t->name, got, (long long)rows,
                     (long long)cols);
}

/* A float32 copy of a tensor's data. */
static float *to_f32(const forge_tensor *t) {
    size_t n = t->nbytes / forge_dtype_size(t->dtype);
    float *f = malloc((n ? n : 1) * sizeof *f);
    if (f && forge_convert(f, FORGE_F32, t->data, t->dtype, n) != FORGE_OK) {
        free(f);
        return NULL;
    }
    return f;
}

static int rope_style(const char *s, forge_rope_style *out) {
    if (strcmp(s, "half") == 0) *out = FORGE_ROPE_HALF;
    else if (strcmp(s, "interleaved") == 0) *out = FORGE_ROPE_INTERLEAVED;
    else if (strcmp(s, "none") == 0) *out = FORGE_ROPE_NONE;
    else return -1;
    return 0;
}

/* Checks shapes and dtypes and fills cfg; returns the exit code on error. */
static int layer_config(const attn_weights *w, const forge_tensor *x, int heads, int kv_heads_opt,
                        forge_layer_config *cfg) {
    const forge_tensor *q = &w->t[W_Q], *k = &w->t[W_K];
    for (int i = 0; i < N_WEIGHTS; i++)
        if (w->present[i] && w->t[i].dtype != x->dtype)
            return cli_error(CMD, "%s is %s but x is %s: weights and input must share a dtype",
                             w->t[i].name, forge_dtype_name(w->t[i].dtype), forge_dtype_name(x->dtype));
    if (q->ndim != 2 || k->ndim != 2)
        return cli_error(CMD, "q_proj.weight and k_proj.weight must be 2-D [out, in]");
    if (q->shape[0] < 1 || q->shape[1] < 1)
        return cli_error(CMD, "q_proj.weight has shape [%lld, %lld]: a layer needs rows and columns",
                         (long long)q->shape[0], (long long)q->shape[1]);
    if (q->shape[0] % heads != 0)
        return cli_error(CMD, "q_proj.weight has %lld rows, not a multiple of --heads %d",
                         (long long)q->shape[0], heads);
    int64_t hidden = q->shape[1], head_dim = q->shape[0] / heads;
    if (k->shape[0] < 1 || k->shape[0] % head_dim != 0)
        return cli_error(CMD, "k_proj.weight has %lld rows, not a multiple of head_dim %lld",
                         (long long)k->shape[0], (long long)head_dim);
    int64_t kv_heads = k->shape[0] / head_dim;
    if (kv_heads_opt > 0 && kv_heads_opt != kv_heads)
        return cli_error(CMD, "--kv-heads %d, but k_proj.weight has %lld heads of head_dim %lld",
                         kv_heads_opt, (long long)kv_heads, (long long)head_dim);
    const int64_t rows[N_WEIGHTS] = {heads * head_dim, kv_heads * head_dim, kv_heads * head_dim,
                                     hidden, heads * head_dim, kv_heads * head_dim,
                                     kv_heads * head_dim, hidden};
    const int64_t cols[N_WEIGHTS] = {hidden, hidden, hidden, heads * head_dim, -1, -1, -1, -1};
    for (int i = 0; i < N_WEIGHTS; i++)
        if (w->present[i] && check_shape(&w->t[i], rows[i], cols[i])) return CLI_RUNTIME;
    if ((x->ndim != 2 && x->ndim != 3) || x->shape[x->ndim - 1] != hidden)
        return cli_error(CMD, "x must be [seq, %lld] or [batch, seq, %lld]", (long long)hidden,
                         (long long)hidden);
    if (hidden > 1 << 24 || head_dim > 1 << 24 || kv_heads > 1 << 24)
        return cli_error(CMD, "dimensions over 2^24");
    cfg->hidden = (int)hidden;
    cfg->heads = heads;
    cfg->kv_heads = (int)kv_heads;
    cfg->head_dim = (int)head_dim;
    cfg->bias = (w->present[B_Q] ? FORGE_BIAS_Q : 0) | (w->present[B_K] ? FORGE_BIAS_K : 0) |
                (w->present[B_V] ? FORGE_BIAS_V : 0) | (w->present[B_O] ? FORGE_BIAS_O : 0);
    cfg->dtype = FORGE_F32; /* computed in fp32, converted back to x's dtype */
    return 0;
}

/* Whether paths a and b name one file (not where either is missing). */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* Runs the layer on xf [batch * seq, hidden] into yf; returns the exit code. */
static int run_layer(forge_backend backend, const forge_layer_config *cfg,
                     const forge_layer_weights *lw, int batch, int seq, int pos0, const float *xf,
                     float *yf) {
    forge_seq *seqs = malloc(sizeof *seqs * (size_t)batch);
    if (!seqs) return cli_error(CMD, "out of memory");
    for (int b = 0; b < batch; b++) seqs[b] = (forge_seq){.slot = b, .pos0 = pos0, .n_tokens = seq};
    const size_t bytes = sizeof(float) * (size_t)batch * seq * cfg->hidden;
    forge_context *ctx = NULL;
    forge_layer *layer = NULL;
    void *dx = NULL, *dy = NULL; /* x and y where the backend computes */
    forge_status st = forge_context_create(backend, &ctx);
    if (st == FORGE_OK) st = forge_layer_create(ctx, cfg, lw, &layer);
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, bytes, &dx);
    if (st == FORGE_OK) st = forge_buffer_alloc(ctx, bytes, &dy);
    if (st == FORGE_OK) st = forge_buffer_upload(ctx, dx, xf, bytes);
    if (st == FORGE_OK) st = forge_layer_forward(layer, NULL, seqs, batch, dx, dy);
    if (st == FORGE_OK) st = forge_buffer_download(ctx, yf, dy, bytes);
    int rc = st == FORGE_OK ? 0 : cli_fail(CMD, st);
    forge_buffer_free(ctx, dx);
    forge_buffer_free(ctx, dy);
    forge_layer_destroy(layer);
    forge_context_destroy(ctx);
    free(seqs);
    return rc;
}

int cmd_attn(int argc, char **argv) {
    const char *weights_path = NULL, *input_path = NULL, *out_path = NULL, *prefix = "";
    const char *style = "half", *backend_name = "auto";
    int heads = 0, kv_heads = 0, pos0 = 0;
    double theta = 10000.0;
    cli_opt opts[] = {
        {"--weights", OPT_STRING, &weights_path, 0}, {"--input", OPT_STRING, &input_path, 0},
        {"--out", OPT_STRING, &out_path, 0},         {"--heads", OPT_INT, &heads, 0},
        {"--kv-heads", OPT_INT, &kv_heads, 0},       {"--rope-theta", OPT_FLOAT, &theta, 0},
        {"--rope-style", OPT_STRING, &style, 0},     {"--pos0", OPT_INT, &pos0, 0},
        {"--prefix", OPT_STRING, &prefix, 0},        {"--backend", OPT_STRING, &backend_name, 0},
    };
    int rc = cli_parse(CMD, argc, argv, opts, sizeof opts / sizeof opts[0]);
    if (rc != CLI_OK) return rc;
    for (int i = 0; i < 4; i++) /* --weights, --input, --out, --heads */
        if (!opts[i].given) return cli_usage(CMD, "%s is required", opts[i].name);
    if (heads < 1) return cli_usage(CMD, "--heads = %d is below 1", heads);
    forge_layer_config cfg = forge_layer_config_default(1, 1, 1, 2);
    forge_backend backend;
    if (rope_style(style, &cfg.rope_style) != 0)
        return cli_usage(CMD, "--rope-style must be half, interleaved or none, not '%s'", style);
    if ((rc = cli_backend(CMD, backend_name, &backend)) != CLI_OK) return rc;
    if (kv_heads < 0) return cli_usage(CMD, "--kv-heads = %d is negative", kv_heads);
    if (pos0 < 0) return cli_usage(CMD, "--pos0 = %d is negative", pos0);
    if (same_file(out_path, weights_path) || same_file(out_path, input_path))
        return cli_usage(CMD, "--out %s is %s: the output would replace an input", out_path,
                         same_file(out_path, weights_path) ? "--weights" : "--input");
    cfg.rope_theta = (float)theta;

    forge_safetensors *wf = NULL, *xf_file = NULL;
    forge_status st = forge_st_open(weights_path, &wf);
    if (st == FORGE_OK) st = forge_st_open(input_path, &xf_file);
    if (st != FORGE_OK) {
        forge_st_close(wf);
        return cli_fail(CMD, st);
    }
    attn_weights w;
    forge_tensor x = {0};
    rc = find_weights(wf, prefix, &w);
    if (!rc && forge_st_find(xf_file, "x", &x) != FORGE_OK)
        rc = cli_error(CMD, "%s has no tensor \"x\"", input_path);
    if (!rc) rc = layer_config(&w, &x, heads, kv_heads, &cfg);
    int64_t batch = 1, seq = 1;
    if (!rc) {
        batch = x.ndim == 3 ? x.shape[0] : 1;
        seq = x.shape[x.ndim - 2];
    }
    if (!rc && (seq < 1 || batch < 1 || batch * seq > 1 << 24))
        rc = cli_error(CMD, "x has %lld sequences of %lld tokens", (long long)batch, (long long)seq);
    if (!rc && (int64_t)pos0 + seq > 1 << 24)
        rc = cli_error(CMD, "--pos0 %d + %lld tokens is past the largest position", pos0, (long long)seq);
    cfg.max_seq = (int)(pos0 + seq);

    float *f[N_WEIGHTS] = {0}, *xf = NULL, *yf = NULL;
    void *y = NULL;
    for (int i = 0; !rc && i < N_WEIGHTS; i++)
        if (w.present[i] && !(f[i] = to_f32(&w.t[i]))) rc = cli_error(CMD, "out of memory");
    if (!rc) {
        xf = to_f32(&x);
        yf = malloc(x.nbytes / forge_dtype_size(x.dtype) * sizeof(float));
        y = malloc(x.nbytes);
        if (!xf || !yf || !y) rc = cli_error(CMD, "out of memory");
    }
    if (!rc) {
        forge_layer_weights lw = {f[W_Q], f[W_K], f[W_V], f[W_O], f[B_Q], f[B_K], f[B_V], f[B_O], NULL, NULL};
        cli_progress_start();
        cli_progress(CMD, "running the layer", 0, 0);
        rc = run_layer(backend, &cfg, &lw, (int)batch, (int)seq, pos0, xf, yf);
        cli_progress_done(CMD);
    }
    if (!rc) {
        size_t n = x.nbytes / forge_dtype_size(x.dtype);
        forge_tensor out = {.name = "y", .dtype = x.dtype, .ndim = x.ndim, .data = y, .nbytes = x.nbytes};
        memcpy(out.shape, x.shape, sizeof out.shape);
        if ((st = forge_convert(y, x.dtype, yf, FORGE_F32, n)) != FORGE_OK ||
            (st = forge_st_write(out_path, &out, 1, NULL, 0)) != FORGE_OK)
            rc = cli_fail(CMD, st);
    }
    if (!rc)
        printf("forge attn: %lld x %lld tokens, hidden %d, heads %d, kv_heads %d, head_dim %d, "
               "%s -> %s\n",
               (long long)batch, (long long)seq, cfg.hidden, cfg.heads, cfg.kv_heads, cfg.head_dim,
               forge_dtype_name(x.dtype), out_path);
    for (int i = 0; i < N_WEIGHTS; i++) free(f[i]);
    free(xf);
    free(yf);
    free(y);
    forge_st_close(wf);
    forge_st_close(xf_file);
    return rc;
}
