/* SPDX-License-Identifier: Apache-2.0 */
/* cli.c: option parsing, errors and timing shared by the forge commands. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "forge %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_fail(const char *cmd, forge_status st) {
    return cli_error(cmd, "%s (%s)", forge_last_error(), forge_status_str(st));
}

static int parse_value(const cli_opt *o, const char *s) {
    char *end;
    errno = 0;
    if (o->kind == OPT_INT) {
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < INT_MIN || v > INT_MAX) return -1;
        *(int *)o->dst = (int)v;
    } else if (o->kind == OPT_FLOAT) {
        double v = strtod(s, &end);
        if (errno || end == s || *end) return -1;
        *(double *)o->dst = v;
    } else {
        *(const char **)o->dst = s;
    }
    return 0;
}

int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts) {
    for (int i = 0; i < argc; i++) {
        const cli_opt *o = NULL;
        for (int j = 0; j < n_opts && !o; j++)
            if (strcmp(argv[i], opts[j].name) == 0) o = &opts[j];
        if (!o) return cli_error(cmd, "unknown option '%s' (see forge help)", argv[i]), -1;
        if (o->kind == OPT_FLAG) {
            *(int *)o->dst = 1;
            continue;
        }
        if (i + 1 >= argc) return cli_error(cmd, "%s needs a value", o->name), -1;
        if (parse_value(o, argv[++i]) != 0)
            return cli_error(cmd, "%s expects %s, got '%s'", o->name,
                             o->kind == OPT_INT ? "an integer" : "a number", argv[i]),
                   -1;
    }
    return 0;
}

int cli_backend(const char *cmd, const char *name, forge_backend *out) {
    static const forge_backend all[] = {FORGE_BACKEND_AUTO, FORGE_BACKEND_CPU, FORGE_BACKEND_CUDA};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, forge_backend_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return cli_error(cmd, "--backend must be auto, cpu or cuda, not '%s'", name);
}

int cli_dtype(const char *cmd, const char *name, forge_dtype *out) {
    static const forge_dtype all[] = {FORGE_F32, FORGE_F16, FORGE_BF16};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, forge_dtype_name(all[i])) == 0) {
            *out = all[i];
            return 0;
        }
    return cli_error(cmd, "--dtype must be fp32, fp16 or bf16, not '%s'", name);
}

double cli_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cli_quantile(double *v, int n, double q) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(q * (n - 1) + 0.5);
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

int cli_parse_bench_shape(const char *cmd, const char *len_opt, int argc, char **argv, const cli_opt *extra,
                          int n_extra, cli_bench_shape *s) {
    enum { SHAPE_OPTS = 10, MAX_EXTRA = 8 };
    const char *dtype_name = "bf16", *backend_name = "auto";
    s->len = s->heads = s->kv_heads = s->head_dim = s->json = 0;
    cli_opt opts[SHAPE_OPTS + MAX_EXTRA] = {
        {"--json", OPT_FLAG, &s->json},         {"--batch", OPT_INT, &s->batch},
        {len_opt, OPT_INT, &s->len},            {"--heads", OPT_INT, &s->heads},
        {"--kv-heads", OPT_INT, &s->kv_heads},  {"--head-dim", OPT_INT, &s->head_dim},
        {"--dtype", OPT_STRING, &dtype_name},   {"--iters", OPT_INT, &s->iters},
        {"--warmup", OPT_INT, &s->warmup},      {"--backend", OPT_STRING, &backend_name},
    };
    if (n_extra > MAX_EXTRA) return cli_error(cmd, "internal error: %d options past the %d a benchmark takes", n_extra, MAX_EXTRA);
    memcpy(opts + SHAPE_OPTS, extra, sizeof *extra * (size_t)n_extra);
    if (cli_parse(cmd, argc, argv, opts, SHAPE_OPTS + n_extra) != 0) return 1;
    if (s->batch < 1 || s->len < 1 || s->heads < 1 || s->head_dim < 1 || s->iters < 1 || s->warmup < 0 ||
        s->kv_heads < 0)
        return cli_error(cmd, "%s, --heads and --head-dim are required; --batch, %s, --heads, --head-dim and "
                              "--iters must be at least 1, --warmup and --kv-heads not negative", len_opt, len_opt);
    if (!s->kv_heads) s->kv_heads = s->heads;
    if (cli_dtype(cmd, dtype_name, &s->dtype) != 0) return 1;
    return cli_backend(cmd, backend_name, &s->backend);
}
