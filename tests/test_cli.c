/* SPDX-License-Identifier: Apache-2.0 */
/* test_cli.c: the forge tool, run as a user would.
 *
 *   test_cli PATH/TO/forge PATH/TO/README.md
 *
 * forge run and forge check check themselves; forge attn on files matches the float64
 * reference in fp32 and bf16; every bad input exits non-zero with one line on
 * stderr naming the problem and the exit code of its kind; forge bench --json
 * prints torch_ref.py's fields; the README's support table is forge support's. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model_dir.h"
#include "test_util.h"

static const char *forge_bin, *readme_path;
static char dir[64];

typedef struct {
    int code;
    char out[65536], err[4096];
} run_result;

static void slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

/* Runs `forge ARGS` (ARGS in the temporary directory) and captures its output. */
static run_result forge(const char *args) {
    run_result r;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && '%s' %s >stdout.txt 2>stderr.txt", dir, forge_bin, args);
    int status = system(cmd);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    char path[128];
    snprintf(path, sizeof path, "%s/stdout.txt", dir);
    slurp(path, r.out, sizeof r.out);
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    slurp(path, r.err, sizeof r.err);
    return r;
}

/* forge(args), which must exit with code and print needle (on stdout or
 * stderr; NULL: anything). */
static run_result expect_forge(const char *args, int code, const char *needle) {
    run_result r = forge(args);
    if (r.code != code || (needle && !strstr(r.out, needle) && !strstr(r.err, needle)))
        fail_msg("forge %s: exit %d (want %d, printing \"%s\"): %s", args, r.code, code, needle ? needle : "",
                 r.err);
    return r;
}

static char *in_dir(const char *name) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* The attention layer that the attn tests write: GQA 4/2, head_dim 16,
 * hidden 48 (not heads * head_dim), every bias. */
static forge_layer_config attn_config(void) {
    forge_layer_config cfg = forge_layer_config_default(48, 4, 2, 16);
    cfg.bias = FORGE_BIAS_Q | FORGE_BIAS_K | FORGE_BIAS_V | FORGE_BIAS_O;
    cfg.max_seq = 64;
    return cfg;
}

/* Writes the layer's weights in dtype, with names prefix + q_proj.weight etc.;
 * `skip` names a tensor to leave out (or NULL). The float data is rounded to
 * dtype in place, so the reference sees what the file holds. */
static void write_weights(const char *file, ref_random_layer *w, const forge_layer_config *c,
                          forge_dtype dtype, const char *prefix, const char *skip) {
    const int64_t H = c->heads, K = c->kv_heads, D = c->head_dim, N = c->hidden;
    struct { const char *name; float *data; int64_t rows, cols; } spec[] = {
        {"q_proj.weight", w->q_proj, H * D, N}, {"k_proj.weight", w->k_proj, K * D, N},
        {"v_proj.weight", w->v_proj, K * D, N}, {"o_proj.weight", w->o_proj, N, H * D},
        {"q_proj.bias", w->q_bias, H * D, 0},   {"k_proj.bias", w->k_bias, K * D, 0},
        {"v_proj.bias", w->v_bias, K * D, 0},   {"o_proj.bias", w->o_bias, N, 0},
    };
    forge_tensor t[8];
    char names[8][128];
    void *bufs[8];
    int n = 0;
    for (int i = 0; i < 8; i++) {
        if (skip && strcmp(skip, spec[i].name) == 0) continue;
        size_t count = (size_t)spec[i].rows * (spec[i].cols ? spec[i].cols : 1);
        bufs[n] = malloc(count * forge_dtype_size(dtype));
        TL_OK(forge_convert(bufs[n], dtype, spec[i].data, FORGE_F32, count));
        TL_OK(forge_convert(spec[i].data, FORGE_F32, bufs[n], dtype, count));
        snprintf(names[n], sizeof names[n], "%s%s", prefix, spec[i].name);
        t[n] = (forge_tensor){.name = names[n], .dtype = dtype, .ndim = spec[i].cols ? 2 : 1,
                              .shape = {spec[i].rows, spec[i].cols}, .data = bufs[n],
                              .nbytes = count * forge_dtype_size(dtype)};
        n++;
    }
    TL_OK(forge_st_write(in_dir(file), t, n, NULL, 0));
    for (int i = 0; i < n; i++) free(bufs[i]);
}

/* Writes x [batch, seq, hidden] (ndim 3) or [seq, hidden] in dtype, rounding x in place. */
static void write_x(const char *file, float *x, int ndim, int64_t batch, int64_t seq, int64_t hidden,
                    forge_dtype dtype) {
    size_t n = (size_t)(batch * seq * hidden);
    void *buf = malloc(n * forge_dtype_size(dtype));
    TL_OK(forge_convert(buf, dtype, x, FORGE_F32, n));
    TL_OK(forge_convert(x, FORGE_F32, buf, dtype, n));
    forge_tensor t = {.name = "x", .dtype = dtype, .ndim = ndim, .data = buf, .nbytes = n * forge_dtype_size(dtype)};
    if (ndim == 3) t.shape[0] = batch, t.shape[1] = seq, t.shape[2] = hidden;
    else t.shape[0] = seq, t.shape[1] = hidden;
    TL_OK(forge_st_write(in_dir(file), &t, 1, NULL, 0));
    free(buf);
}

static void test_run(void **state) {
    run_result r = forge("run --iters 20");
    if (r.code != 0) fail_msg("forge run exited %d: %s", r.code, r.err);
    assert_non_null(strstr(r.out, "backend: "));
    assert_non_null(strstr(r.out, "relative L2"));
    assert_non_null(strstr(r.out, "attention"));
    assert_non_null(strstr(r.out, "fallbacks: none"));
}

static void test_check(void **state) {
    run_result r = forge("check");
    if (r.code != 0) fail_msg("forge check exited %d: %s", r.code, r.err);
    assert_non_null(strstr(r.out, "checks within tolerance"));
    assert_null(strstr(r.out, "OVER"));
}

/* forge attn in dtype on x [2, 5, 48] at pos0 3, against the reference. */
static void check_attn(forge_dtype dtype, int ndim, const char *prefix) {
    forge_layer_config cfg = attn_config();
    ref_random_layer w;
    assert_int_equal(ref_random_layer_make(&w, &cfg, 41), 0);
    const int batch = ndim == 3 ? 2 : 1, seq = 5, H = cfg.hidden;
    float *x = tl_random((size_t)batch * seq * H, 42, 1.0);
    write_weights("w.safetensors", &w, &cfg, dtype, prefix, NULL);
    write_x("x.safetensors", x, ndim, batch, seq, H, dtype);
    char args[512];
    snprintf(args, sizeof args,
             "attn --weights w.safetensors --input x.safetensors --out y.safetensors --heads 4 "
             "--pos0 3 --prefix '%s'", prefix);
    run_result r = forge(args);
    if (r.code != 0) fail_msg("forge %s exited %d: %s", args, r.code, r.err);
    forge_safetensors *st;
    TL_OK(forge_st_open(in_dir("y.safetensors"), &st));
    forge_tensor y;
    TL_OK(forge_st_find(st, "y", &y));
    assert_int_equal(y.dtype, dtype);
    assert_int_equal(y.ndim, ndim);
    assert_int_equal(y.shape[ndim - 1], H);
    assert_int_equal(y.shape[ndim - 2], seq);
    float *got = malloc(sizeof *got * batch * seq * H);
    TL_OK(forge_convert(got, FORGE_F32, y.data, dtype, (size_t)batch * seq * H));
    double *want = malloc(sizeof *want * seq * H);
    for (int b = 0; b < batch; b++) {
        assert_int_equal(ref_layer_forward(&cfg, &w.w, x + (size_t)b * seq * H, seq, 3, want, NULL), 0);
        tl_expect_close(got + (size_t)b * seq * H, want, (size_t)seq * H, ref_tolerance(dtype), "forge attn");
    }
    forge_st_close(st);
    free(got);
    free(want);
    free(x);
    ref_random_layer_free(&w);
}

static void test_attn_fp32(void **state) { check_attn(FORGE_F32, 3, ""); }
static void test_attn_bf16(void **state) { check_attn(FORGE_BF16, 2, ""); }
static void test_attn_prefix(void **state) { check_attn(FORGE_F16, 3, "model.layers.0.self_attn."); }

/* Every bad input: a non-zero exit and one line on stderr naming the problem. */
static void test_bad_inputs(void **state) {
    forge_layer_config cfg = attn_config();
    ref_random_layer w;
    assert_int_equal(ref_random_layer_make(&w, &cfg, 43), 0);
    float *x = tl_random((size_t)5 * 48, 44, 1.0), *x40 = tl_random((size_t)5 * 40, 45, 1.0);
    write_weights("w.safetensors", &w, &cfg, FORGE_F32, "", NULL);
    write_weights("noq.safetensors", &w, &cfg, FORGE_F32, "", "q_proj.weight");
    write_x("x.safetensors", x, 2, 1, 5, 48, FORGE_F32);
    write_x("xbf.safetensors", x, 2, 1, 5, 48, FORGE_BF16);
    write_x("x40.safetensors", x40, 2, 1, 5, 40, FORGE_F32);
    /* a q_proj.weight of no rows beside the others */
    const forge_tensor q0[] = {
        {.name = "q_proj.weight", .dtype = FORGE_F32, .ndim = 2, .shape = {0, 48}},
        {.name = "k_proj.weight", .dtype = FORGE_F32, .ndim = 2, .shape = {1, 48}, .data = x, .nbytes = 4 * 48},
        {.name = "v_proj.weight", .dtype = FORGE_F32, .ndim = 2, .shape = {1, 48}, .data = x, .nbytes = 4 * 48},
        {.name = "o_proj.weight", .dtype = FORGE_F32, .ndim = 2, .shape = {48, 1}, .data = x, .nbytes = 4 * 48},
    };
    TL_OK(forge_st_write(in_dir("q0.safetensors"), q0, 4, NULL, 0));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cd '%s' && head -c 1000 w.safetensors > cut.safetensors && "
                              "head -c 100 w.safetensors > cuthead.safetensors", dir);
    assert_int_equal(system(cmd), 0);
    const char *base = "attn --input x.safetensors --out y.safetensors";
    /* exit codes: 2 for a command line that is wrong, 3 for what could not run */
    const struct { const char *args, *needle; int code; } cases[] = {
        {"attn --weights missing.safetensors --input x.safetensors --out y.safetensors --heads 4", "cannot open", 3},
        {"attn --weights cut.safetensors --input x.safetensors --out y.safetensors --heads 4", "outside", 3},
        {"attn --weights cuthead.safetensors --input x.safetensors --out y.safetensors --heads 4", "exceeds", 3},
        {"attn --weights noq.safetensors --input x.safetensors --out y.safetensors --heads 4", "q_proj.weight", 3},
        {"attn --weights q0.safetensors --input x.safetensors --out y.safetensors --heads 4", "shape [0, 48]", 3},
        {"attn --weights . --input x.safetensors --out y.safetensors --heads 4", "not a regular file", 3},
        {"@ --weights w.safetensors --heads 3", "multiple of --heads", 3},
        {"@ --weights w.safetensors --heads 4 --kv-heads 4", "--kv-heads", 3},
        {"@ --weights w.safetensors --heads 0", "--heads = 0 is below 1", 2},
        {"@ --weights w.safetensors --heads four", "expects an integer", 2},
        {"@ --weights w.safetensors --heads 4 --pos0 -2", "--pos0", 2},
        {"@ --weights w.safetensors --heads 4 --pos0 2147483000", "position", 3},
        {"@ --weights w.safetensors --heads 4 --rope-style sideways", "--rope-style", 2},
        {"@ --weights w.safetensors --heads 4 --rope-theta 0", "rope_theta", 3},
        {"@ --weights w.safetensors --heads 4 --frobnicate", "unknown option", 2},
        {"@ --weights w.safetensors --heads 4 --backend tpu", "--backend", 2},
        {"@ --weights w.safetensors --heads 4 --heads=4", "--heads is given twice", 2},
        {"@ --weights w.safetensors --heads 4 stray", "unexpected argument 'stray'", 2},
        {"attn --weights w.safetensors --input x.safetensors --out w.safetensors --heads 4", "--weights", 2},
        {"attn --weights w.safetensors --input x.safetensors --out ./x.safetensors --heads 4", "--input", 2},
        {"attn --weights w.safetensors --input xbf.safetensors --out y.safetensors --heads 4", "share a dtype", 3},
        {"attn --weights w.safetensors --input x40.safetensors --out y.safetensors --heads 4", "x must be", 3},
        {"attn --weights w.safetensors --input x.safetensors --heads 4", "--out is required", 2},
        {"attn --weights w.safetensors --input x.safetensors --out /nonexistent/y.safetensors --heads 4", "/nonexistent", 3},
        {"bench layer --seq 0 --heads 4 --head-dim 32", "--seq", 2},
        {"bench layer --seq 8 --heads 4 --kv-heads 3 --head-dim 32", "kv_heads", 2},
        {"bench layer --seq 8 --heads 4 --head-dim 31", "odd", 2},
        {"bench layer --seq 8 --heads 4 --head-dim 32 --dtype fp8", "--dtype", 2},
        {"bench layer --seq 1 --heads 65536 --head-dim 65536", "--heads 65536 x --head-dim 65536", 2},
        {"bench nothing --seq 8", "no command 'bench nothing'", 2},
        {"help nothing", "no command 'nothing'", 2},
        {"bench step --kv-len 8", "--heads is required", 2},
        {"bench step --kv-len 8 --heads 4 --head-dim 64 --hidden -1", "--hidden", 2},
        {"bench step --kv-len 8 --heads 4 --head-dim 64 --hidden 16777217", "--hidden", 2},
        {"bench step --kv-len 8 --heads 65536 --head-dim 256 --hidden 16777216", "exceeds 16777216", 2},
        {"bench step --kv-len 8 --heads 4 --head-dim 64 --warmup 2147483647", "--warmup", 2},
        {"bench step --kv-len 8 --heads 4 --kv-heads 3 --head-dim 64", "kv_heads", 2},
        {"bench step --kv-len 8 --heads 4 --head-dim 64 --split-size 24", "page size", 3},
        {"bench decode --seq 8", "unknown option", 2},
        {"bench decode --kv-len 8", "--heads is required", 2},
        {"bench decode --kv-len 8 --heads 4 --head-dim 64 --page-size 24", "page_size", 3},
        {"bench decode --kv-len 8 --heads 4 --kv-heads 3 --head-dim 64", "kv_heads", 3},
        {"bench prefill --seq 8", "--heads is required", 2},
        {"bench prefill --seq 8 --heads 4 --head-dim 64 --dtype fp8", "--dtype", 2},
        {"bench prefill --seq 8 --heads 4 --head-dim 64 --kernel fast", "--kernel", 2},
        {"bench prefill --seq 8 --heads 4 --kv-heads 3 --head-dim 64 --backend cpu", "kv_heads", 3},
        {"bench prefill --seq 1 --heads 1 --head-dim 64 --batch 2147483647", "--batch", 2},
        {"bench prefill --seq 1073741824 --batch 2 --heads 1 --head-dim 64", "2^24 tokens", 2},
        {"tokenize --text hi", "--model is required", 2},
        {"tokenize --model m", "--text or --file", 2},
        {"tokenize --model m --text hi --file f", "--text or --file", 2},
        {"tokenize --model /nonexistent --text hi", "cannot open /nonexistent", 3},
        {"tokenize --model m --file /nonexistent/f", "cannot read /nonexistent/f", 3},
        {"detokenize --ids 1,2", "--model is required", 2},
        {"detokenize --model m", "--ids is required", 2},
        {"detokenize --model m --ids 1,,2", "not a list of integers", 2},
        {"detokenize --model m --ids 1,x", "not a list of integers", 2},
        {"detokenize --model /nonexistent --ids 1", "cannot open /nonexistent", 3},
        {"run --iters 0", "--iters", 2},
        {"run --iters", "--iters needs a value", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[512];
        if (cases[i].args[0] == '@') snprintf(args, sizeof args, "%s%s", base, cases[i].args + 1);
        else snprintf(args, sizeof args, "%s", cases[i].args);
        const double t0 = tl_now_s();
        run_result r = forge(args);
        char *nl = strchr(r.err, '\n');
        if (r.code != cases[i].code || !nl || nl[1] != '\0' || !strstr(r.err, cases[i].needle))
            fail_msg("forge %s: exit %d, stderr \"%s\" (wanted exit %d and one line naming \"%s\")", args, r.code,
                     r.err, cases[i].code, cases[i].needle);
        /* refused before anything large is made (bench step --hidden 16777217
         * once built 12.6 GB of weights first) */
        if (tl_now_s() - t0 > tl_time_bound(5.0)) fail_msg("forge %s took %.1f s to refuse", args, tl_now_s() - t0);
    }
    run_result r = forge("frobnicate");
    assert_int_equal(r.code, 2);
    /* the inputs are as they were */
    forge_safetensors *st;
    TL_OK(forge_st_open(in_dir("w.safetensors"), &st));
    forge_st_close(st);
    TL_OK(forge_st_open(in_dir("x.safetensors"), &st));
    forge_st_close(st);
    free(x);
    free(x40);
    ref_random_layer_free(&w);
}

/* The README's support table, between its markers, is what forge support
 * prints from the library's table. */
static void test_support_table(void **state) {
    run_result r = forge("support");
    assert_int_equal(r.code, 0);
    static char readme[1 << 18];
    slurp(readme_path, readme, sizeof readme);
    const char *begin = strstr(readme, "<!-- forge support -->\n"), *end = strstr(readme, "<!-- end forge support -->");
    if (!begin || !end) fail_msg("%s has no <!-- forge support --> section", readme_path);
    begin += strlen("<!-- forge support -->\n");
    if ((size_t)(end - begin) != strlen(r.out) || strncmp(begin, r.out, strlen(r.out)) != 0)
        fail_msg("the README's support table is not forge support's; put this between its markers:\n%s", r.out);
}

/* forge --version, forge help, and each command's --help: its usage on
 * stdout, exit 0. */
static void test_help(void **state) {
    run_result r = forge("--version");
    assert_int_equal(r.code, 0);
    char want[64];
    snprintf(want, sizeof want, "forge %s\n", forge_version());
    assert_string_equal(r.out, want);
    const char *commands[] = {"run", "attn", "check", "bench layer", "bench prefill", "bench decode", "bench step"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char args[64], usage[64];
        snprintf(usage, sizeof usage, "usage: forge %s", commands[i]);
        snprintf(args, sizeof args, "%s --help", commands[i]);
        r = forge(args);
        if (r.code != 0 || strncmp(r.out, usage, strlen(usage)) != 0)
            fail_msg("forge %s: exit %d, \"%.60s\"", args, r.code, r.out);
        char both[64];
        snprintf(both, sizeof both, "help %s", commands[i]);
        run_result h = forge(both);
        assert_int_equal(h.code, 0);
        assert_string_equal(h.out, r.out);
    }
    r = forge("help");
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "Exit codes"));
    r = forge("bench --help");
    assert_int_equal(r.code, 0);
    assert_non_null(strstr(r.out, "usage: forge bench decode"));
    r = forge("bench");
    assert_int_equal(r.code, 2);
    assert_string_equal(r.out, "");
    assert_non_null(strstr(r.err, "usage: forge bench layer"));
    r = forge("");
    assert_int_equal(r.code, 2);
    /* --name=value is --name value */
    r = forge("run --iters=2 --backend=cpu");
    if (r.code != 0) fail_msg("forge run --iters=2 --backend=cpu: exit %d, %s", r.code, r.err);
    assert_non_null(strstr(r.out, "medians of 2 calls"));
}

static void test_bench_json(void **state) {
    run_result r = forge("bench layer --json --seq 16 --heads 4 --kv-heads 2 --head-dim 32 "
                         "--hidden 96 --batch 2 --iters 5 --warmup 1");
    if (r.code != 0) fail_msg("forge bench exited %d: %s", r.code, r.err);
    char *nl = strchr(r.out, '\n');
    assert_true(nl && nl[1] == '\0'); /* one object, one line */
    cJSON *j = cJSON_Parse(r.out);
    assert_non_null(j);
    const struct { const char *key; double want; } ints[] = {
        {"seq", 16}, {"heads", 4}, {"kv_heads", 2}, {"head_dim", 32}, {"hidden", 96}, {"batch", 2},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        cJSON *v = cJSON_GetObjectItem(j, ints[i].key);
        assert_true(cJSON_IsNumber(v) && v->valuedouble == ints[i].want);
    }
    assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "layer");
    assert_true(strncmp(cJSON_GetObjectItem(j, "impl")->valuestring, "forge-", 6) == 0);
    assert_string_equal(cJSON_GetObjectItem(j, "dtype")->valuestring, "fp32");
    const char *times[] = {"eager_us", "eager_us_p10", "eager_us_p90", "graph_us", "eager_wall_us",
                           "graph_wall_us", "qkv_us", "attention_us"};
    for (int i = 0; i < 8; i++) {
        cJSON *v = cJSON_GetObjectItem(j, times[i]);
        assert_true(cJSON_IsNumber(v) && v->valuedouble > 0.0);
    }
    cJSON_Delete(j);
}

/* forge bench prefill --json: one object with torch_ref.py prefill's fields. */
static void test_bench_prefill_json(void **state) {
    run_result r = forge("bench prefill --json --seq 40 --heads 2 --kv-heads 1 --head-dim 32 --batch 2 "
                         "--iters 2 --warmup 0 --no-causal");
    if (r.code != 0) fail_msg("forge bench prefill exited %d: %s", r.code, r.err);
    char *nl = strchr(r.out, '\n');
    assert_true(nl && nl[1] == '\0');
    cJSON *j = cJSON_Parse(r.out);
    assert_non_null(j);
    const struct { const char *key; double want; } ints[] = {
        {"seq", 40}, {"heads", 2}, {"kv_heads", 1}, {"head_dim", 32}, {"batch", 2},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        cJSON *v = cJSON_GetObjectItem(j, ints[i].key);
        assert_true(cJSON_IsNumber(v) && v->valuedouble == ints[i].want);
    }
    assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "prefill");
    assert_string_equal(cJSON_GetObjectItem(j, "dtype")->valuestring, "bf16");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "causal")));
    const double us = cJSON_GetObjectItem(j, "us")->valuedouble, tflops = cJSON_GetObjectItem(j, "TFLOPs")->valuedouble;
    assert_true(us > 0.0);
    /* non-causal: 4 * B * H * S^2 * D FLOPs, printed to 0.01 TFLOP/s */
    assert_true(fabs(tflops - 4.0 * 2 * 2 * 40 * 40 * 32 / us / 1e6) <= 0.006);
    cJSON_Delete(j);
}

/* forge bench decode --json: one object with torch_ref.py decode's fields. */
static void test_bench_decode_json(void **state) {
    run_result r = forge("bench decode --json --kv-len 300 --heads 4 --kv-heads 2 --head-dim 64 --batch 3 "
                         "--page-size 32 --iters 2 --warmup 0");
    if (r.code != 0) fail_msg("forge bench decode exited %d: %s", r.code, r.err);
    char *nl = strchr(r.out, '\n');
    assert_true(nl && nl[1] == '\0');
    cJSON *j = cJSON_Parse(r.out);
    assert_non_null(j);
    const struct { const char *key; double want; } ints[] = {
        {"kv_len", 300}, {"heads", 4}, {"kv_heads", 2}, {"head_dim", 64}, {"batch", 3}, {"page_size", 32},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        cJSON *v = cJSON_GetObjectItem(j, ints[i].key);
        assert_true(cJSON_IsNumber(v) && v->valuedouble == ints[i].want);
    }
    assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "decode");
    assert_string_equal(cJSON_GetObjectItem(j, "dtype")->valuestring, "bf16");
    const double us = cJSON_GetObjectItem(j, "us")->valuedouble, tbps = cJSON_GetObjectItem(j, "TBps")->valuedouble;
    assert_true(us > 0.0);
    /* K and V read: 2 * B * K * L * D * 2 bytes, printed to 0.001 TB/s */
    assert_true(fabs(tbps - 2.0 * 3 * 2 * 300 * 64 * 2 / us / 1e6) <= 0.0006);
    /* the split the calls used, chosen here: splits cover the 300 tokens */
    const int split = cJSON_GetObjectItem(j, "split_size")->valueint, splits = cJSON_GetObjectItem(j, "splits")->valueint;
    assert_true(split >= 1 && splits == (300 + split - 1) / split);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "split_fixed")));
    cJSON_Delete(j);
}

/* forge bench step --json: the layer's decode step, eager and as a graph. */
static void test_bench_step_json(void **state) {
    run_result r = forge("bench step --json --kv-len 40 --heads 4 --kv-heads 2 --head-dim 32 --hidden 96 --batch 3 "
                         "--split-size 32 --iters 2 --warmup 1");
    if (r.code != 0) fail_msg("forge bench step exited %d: %s", r.code, r.err);
    char *nl = strchr(r.out, '\n');
    assert_true(nl && nl[1] == '\0');
    cJSON *j = cJSON_Parse(r.out);
    assert_non_null(j);
    const struct { const char *key; double want; } ints[] = {
        {"kv_len", 40}, {"heads", 4}, {"kv_heads", 2}, {"head_dim", 32}, {"hidden", 96}, {"batch", 3}, {"page_size", 16},
        {"split_size", 32},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        cJSON *v = cJSON_GetObjectItem(j, ints[i].key);
        assert_true(cJSON_IsNumber(v) && v->valuedouble == ints[i].want);
    }
    assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "decode_step");
    const char *keys[] = {"eager_us", "graph_us", "update_us"};
    for (int i = 0; i < 3; i++) assert_true(cJSON_GetObjectItem(j, keys[i])->valuedouble >= 0.0);
    assert_true(cJSON_GetObjectItem(j, "eager_us")->valuedouble > 0.0);
    cJSON_Delete(j);
}

/* forge generate on a tiny model the test writes (no tokenizer): --ids
 * and --json give the ids forge_model_generate gives, the counts go to
 * stderr, and bad ids and a bad directory are one line each, exit 3; and
 * forge bench model's rows on it. */
static void test_generate(void **state) {
    (void)state;
    const md_spec s = {"LlamaForCausalLM", 61, 32, 48, 2, 4, 2, 8, 64, 1, 0, 0, FORGE_F32, ""};
    md_model mm;
    md_model_open(&mm, &s, 77, FORGE_BACKEND_CPU, 1, 64);
    forge_model *m = mm.m;
    char model[64];
    snprintf(model, sizeof model, "%s", mm.dir);
    const int32_t prompt[3] = {5, 17, 42};
    int32_t want[12];
    int made;
    const forge_sampling greedy = forge_sampling_greedy();
    TL_OK(forge_model_generate(m, prompt, 3, 12, &greedy, NULL, 0, NULL, NULL, want, &made));
    char line[256] = "", *end = line;
    for (int i = 0; i < made; i++) end += snprintf(end, sizeof line - (size_t)(end - line), i ? " %d" : "%d", want[i]);

    char args[256];
    snprintf(args, sizeof args, "generate --model %s --prompt-ids 5,17,42 -n 12 --backend cpu --ids", model);
    run_result r = forge(args);
    assert_int_equal(r.code, 0);
    if (strncmp(r.out, line, strlen(line)) != 0 || r.out[strlen(line)] != '\n')
        fail_msg("forge generate --ids printed \"%s\", the API generates \"%s\"", r.out, line);
    assert_non_null(strstr(r.err, "3 prompt tokens, 12 generated"));
    /* split over 2 ranks: the same greedy tokens */
    snprintf(args, sizeof args, "generate --model %s --prompt-ids 5,17,42 -n 12 --backend cpu --ids --tp 2", model);
    r = forge(args);
    assert_int_equal(r.code, 0);
    if (strncmp(r.out, line, strlen(line)) != 0)
        fail_msg("forge generate --tp 2 printed \"%s\", the whole model generates \"%s\"", r.out, line);
    snprintf(args, sizeof args, "generate --model %s --prompt-ids 5,17,42 -n 12 --backend cpu --json", model);
    r = forge(args);
    assert_int_equal(r.code, 0);
    cJSON *j = cJSON_Parse(r.out);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "prompt_tokens")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(j, "generated_tokens")->valueint, 12);
    const cJSON *ids = cJSON_GetObjectItem(j, "ids");
    for (int i = 0; i < made; i++) assert_int_equal(cJSON_GetArrayItem(ids, i)->valueint, want[i]);
    assert_true(cJSON_GetObjectItem(j, "decode_tok_per_s")->valuedouble > 0);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "generate --model %s --prompt-ids 5,61 --backend cpu --ids", model);
    r = forge(args);
    assert_int_equal(r.code, 3);
    assert_non_null(strstr(r.err, "61 is outside the vocabulary"));
    r = forge("generate --model nowhere --prompt-ids 5 --ids");
    assert_int_equal(r.code, 3);
    assert_non_null(strstr(r.err, "config.json"));
    snprintf(args, sizeof args, "generate --model %s --ids", model);
    r = forge(args);
    assert_int_equal(r.code, 2);
    /* a prompt past the model's 64 positions is refused; a generation that
     * would pass them stops where they end (the last token never fed) */
    int at = snprintf(args, sizeof args, "generate --model %s --backend cpu --ids --prompt-ids 1", model);
    for (int i = 1; i < 65; i++) at += snprintf(args + at, sizeof args - (size_t)at, ",1");
    expect_forge(args, 2, "the prompt's 65 tokens do not fit the context of 64");
    snprintf(args, sizeof args, "generate --model %s --prompt-ids 5,17,42 -n 100 --backend cpu --ids", model);
    r = expect_forge(args, 0, "-n 100 stops at 62");
    int words = 0;
    for (char *w = strtok(r.out, " \n"); w; w = strtok(NULL, " \n")) words++;
    assert_int_equal(words, 62);

    /* forge bench model on the same directory: three rows, torch_model_ref.py's fields */
    snprintf(args, sizeof args, "bench model --model %s --prompt 8 --new 4 --batch 2 --backend cpu --json", model);
    r = forge(args);
    assert_int_equal(r.code, 0);
    static const char *modes[] = {"load", "prefill", "decode"};
    char *row_text = r.out;
    for (int i = 0; i < 3; i++) {
        char *next = strchr(row_text, '\n');
        assert_non_null(next);
        *next = '\0';
        cJSON *row = cJSON_Parse(row_text);
        assert_non_null(row);
        assert_string_equal(cJSON_GetObjectItem(row, "mode")->valuestring, modes[i]);
        assert_int_equal(cJSON_GetObjectItem(row, "batch")->valueint, 2);
        if (i > 0) assert_true(cJSON_GetObjectItem(row, "tok_per_s")->valuedouble > 0);
        cJSON_Delete(row);
        row_text = next + 1;
    }
    /* --shape: random weights of a named shape, cut to --layers */
    r = forge("bench model --shape smollm2-135m --layers 2 --prompt 4 --new 2 --backend cpu --json");
    assert_int_equal(r.code, 0);
    cJSON *row = cJSON_Parse(r.out); /* the first row: the load */
    assert_non_null(row);
    assert_int_equal(cJSON_GetObjectItem(row, "layers")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(row, "hidden")->valueint, 576);
    assert_string_equal(cJSON_GetObjectItem(row, "source")->valuestring, "random");
    cJSON_Delete(row);
    /* split over 3 ranks (SmolLM2's 9 heads, 3 KV heads): the rows say so */
    r = forge("bench model --shape smollm2-135m --layers 1 --prompt 4 --new 2 --backend cpu --tp 3 --json");
    assert_int_equal(r.code, 0);
    assert_non_null(row = cJSON_Parse(r.out));
    assert_int_equal(cJSON_GetObjectItem(row, "tp")->valueint, 3);
    cJSON_Delete(row);
    const struct { const char *args, *needle; int code; } bad_shapes[] = {
        {"bench model --shape llama9-1t --backend cpu", "no shape named \"llama9-1t\" (known: llama3-8b, ", 3},
        {"bench model --shape smollm2-135m --layers 31 --backend cpu", "--layers 31 is outside [1, 30]", 2},
        {"bench model --shape smollm2-135m --model x", "one of --model DIR and --shape NAME", 2},
        {"bench model --shape smollm2-135m --layers 1 --backend cpu --tp 2", "does not divide the 9 attention heads", 3},
        {"bench model --shape smollm2-135m --tp -1", "--tp -1 is negative", 2},
    };
    for (size_t i = 0; i < sizeof bad_shapes / sizeof bad_shapes[0]; i++) {
        r = forge(bad_shapes[i].args);
        if (r.code != bad_shapes[i].code || !strstr(r.err, bad_shapes[i].needle))
            fail_msg("forge %s: exit %d, \"%s\"", bad_shapes[i].args, r.code, r.err);
    }
    /* sampled decode steps: the decode row names the sampling; a bad one is refused by name */
    snprintf(args, sizeof args, "bench model --model %s --prompt 4 --new 3 --backend cpu --json --temperature 0.8 "
             "--top-k 5 --seed 9", model);
    expect_forge(args, 0, "\"sampling\": \"temperature 0.8, top_k 5, top_p 1, min_p 0, repeat_penalty 1\"");
    snprintf(args, sizeof args, "bench model --model %s --prompt 4 --new 3 --backend cpu --temperature 1 --top-p 2", model);
    expect_forge(args, 3, "sampling[0] needs");
    md_model_close(&mm);
}

static int make_dir(void **state) {
    snprintf(dir, sizeof dir, "/tmp/forge_cli_XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_cli PATH/TO/forge PATH/TO/README.md\n");
        return 2;
    }
    readme_path = argv[2];
    static char bin[4096];
    if (!realpath(argv[1], bin)) {
        fprintf(stderr, "test_cli: no forge binary at %s\n", argv[1]);
        return 2;
    }
    forge_bin = bin;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_attn_fp32),
        cmocka_unit_test(test_attn_bf16),
        cmocka_unit_test(test_attn_prefix),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_support_table),
        cmocka_unit_test(test_bench_json),
        cmocka_unit_test(test_bench_prefill_json),
        cmocka_unit_test(test_bench_decode_json),
        cmocka_unit_test(test_bench_step_json),
        cmocka_unit_test(test_generate),
    };
    return cmocka_run_group_tests_name("cli", tests, make_dir, remove_dir);
}
