/* SPDX-License-Identifier: Apache-2.0 */
/* cli.c: option parsing (getopt_long), errors, progress and timing shared
 * by the forge commands. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void vprint(const char *cmd, const char *fmt, va_list ap) {
    fprintf(stderr, "forge %s: ", cmd);
    vfprintf(stderr, fmt, ap);
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprint(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see forge help %s)\n", cmd);
    return CLI_USAGE;
}

int cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprint(cmd, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_RUNTIME;
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

/* getopt_long's value for opts[i]: past every character an option could be */
#define OPT_VAL(i) (0x100 + (i))

int cli_parse(const char *cmd, int argc, char **argv, cli_opt *opts, int n_opts) {
    struct option *longs = calloc((size_t)n_opts + 1, sizeof *longs);
    if (!longs) return cli_error(cmd, "out of memory");
    /* "--name" is a long option; "-n", one letter, a short one */
    char shorts[2 * 16 + 2] = ":";
    int n_longs = 0;
    for (int i = 0; i < n_opts; i++) {
        const int has_arg = opts[i].kind == OPT_FLAG ? no_argument : required_argument;
        if (opts[i].name[1] != '-' && strlen(shorts) + 2 < sizeof shorts) {
            strncat(shorts, opts[i].name + 1, 1);
            if (has_arg) strcat(shorts, ":");
        } else {
            longs[n_longs++] = (struct option){opts[i].name + 2, has_arg, NULL, OPT_VAL(i)};
        }
        opts[i].given = 0;
    }
    opterr = 0; /* its messages are ours */
    optind = 0; /* glibc: start over, for each command line parsed */
    int c, rc = CLI_OK;
    while (rc == CLI_OK && (c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        for (int i = 0; c < OPT_VAL(0) && c != '?' && c != ':' && i < n_opts; i++)
            if (opts[i].name[1] == c && opts[i].name[2] == '\0') c = OPT_VAL(i);
        if (c == '?') {
            rc = cli_usage(cmd, "unknown option '%s'", argv[optind - 1]);
        } else if (c == ':') {
            rc = cli_usage(cmd, "%s needs a value", argv[optind - 1]);
        } else {
            cli_opt *o = &opts[c - OPT_VAL(0)];
            if (o->given++) rc = cli_usage(cmd, "%s is given twice", o->name);
            else if (o->kind == OPT_FLAG) *(int *)o->dst = 1;
            else if (parse_value(o, optarg) != 0)
                rc = cli_usage(cmd, "%s expects %s, not '%s'", o->name,
                               o->kind == OPT_INT ? "an integer" : "a number", optarg);
        }
    }
    if (rc == CLI_OK && optind < argc) rc = cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
    free(longs);
    return rc;
}

int cli_backend(const char *cmd, const char *name, forge_backend *out) {
    static const forge_backend all[] = {FORGE_BACKEND_AUTO, FORGE_BACKEND_CPU, FORGE_BACKEND_CUDA};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, forge_backend_name(all[i])) == 0) {
            *out = all[i];
            return CLI_OK;
        }
    return cli_usage(cmd, "--backend must be auto, cpu or cuda, not '%s'", name);
}

int cli_dtype(const char *cmd, const char *name, forge_dtype *out) {
    static const forge_dtype all[] = {FORGE_F32, FORGE_F16, FORGE_BF16};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, forge_dtype_name(all[i])) == 0) {
            *out = all[i];
            return CLI_OK;
        }
    return cli_usage(cmd, "--dtype must be fp32, fp16 or bf16, not '%s'", name);
}

double cli_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}

static double progress_t0;

void cli_progress_start(void) { progress_t0 = cli_now_us(); }

void cli_progress(const char *cmd, const char *what, int i, int n) {
    if (!isatty(STDERR_FILENO)) return;
    if (n > 0) fprintf(stderr, "\rforge %s: %s %d/%d ", cmd, what, i, n);
    else fprintf(stderr, "\rforge %s: %s ", cmd, what);
    fflush(stderr);
}

void cli_progress_done(const char *cmd) {
    if (!isatty(STDERR_FILENO)) return;
    fprintf(stderr, "\r\033[Kforge %s: done in %.1f s\n", cmd, (cli_now_us() - progress_t0) * 1e-6);
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

/* The value of an option that was given must lie in [lo, hi]. */
static int check_range(const char *cmd, const char *name, int v, int lo, int hi) {
    return v >= lo && v <= hi ? CLI_OK : cli_usage(cmd, "%s = %d is outside %d .. %d", name, v, lo, hi);
}

int cli_parse_bench_shape(const char *cmd, const char *len_opt, int argc, char **argv, cli_opt *extra,
                          int n_extra, cli_bench_shape *s) {
    enum { SHAPE_OPTS = 10, MAX_EXTRA = 8 };
    const char *dtype_name = "bf16", *backend_name = "auto";
    s->len = s->heads = s->kv_heads = s->head_dim = s->json = 0;
    cli_opt opts[SHAPE_OPTS + MAX_EXTRA] = {
        {"--json", OPT_FLAG, &s->json, 0},         {"--batch", OPT_INT, &s->batch, 0},
        {len_opt, OPT_INT, &s->len, 0},            {"--heads", OPT_INT, &s->heads, 0},
        {"--kv-heads", OPT_INT, &s->kv_heads, 0},  {"--head-dim", OPT_INT, &s->head_dim, 0},
        {"--dtype", OPT_STRING, &dtype_name, 0},   {"--iters", OPT_INT, &s->iters, 0},
        {"--warmup", OPT_INT, &s->warmup, 0},      {"--backend", OPT_STRING, &backend_name, 0},
    };
    if (n_extra > MAX_EXTRA) return cli_error(cmd, "internal error: %d options past the %d a benchmark takes", n_extra, MAX_EXTRA);
    memcpy(opts + SHAPE_OPTS, extra, sizeof *extra * (size_t)n_extra);
    int rc = cli_parse(cmd, argc, argv, opts, SHAPE_OPTS + n_extra);
    memcpy(extra, opts + SHAPE_OPTS, sizeof *extra * (size_t)n_extra); /* their `given` */
    if (rc != CLI_OK) return rc;
    const char *required[] = {len_opt, "--heads", "--head-dim"};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < SHAPE_OPTS; j++)
            if (strcmp(opts[j].name, required[i]) == 0 && !opts[j].given)
                return cli_usage(cmd, "%s is required", required[i]);
    if ((rc = check_range(cmd, "--batch", s->batch, 1, CLI_MAX_BATCH)) || (rc = check_range(cmd, len_opt, s->len, 1, CLI_MAX_LEN)) ||
        (rc = check_range(cmd, "--heads", s->heads, 1, CLI_MAX_HEADS)) ||
        (rc = check_range(cmd, "--kv-heads", s->kv_heads, 0, s->heads)) ||
        (rc = check_range(cmd, "--head-dim", s->head_dim, 1, 256)) ||
        (rc = check_range(cmd, "--iters", s->iters, 1, CLI_MAX_ITERS)) ||
        (rc = check_range(cmd, "--warmup", s->warmup, 0, CLI_MAX_ITERS)))
        return rc;
    if (!s->kv_heads) s->kv_heads = s->heads;
    if ((rc = cli_dtype(cmd, dtype_name, &s->dtype)) != CLI_OK) return rc;
    return cli_backend(cmd, backend_name, &s->backend);
}

int32_t *cli_parse_ids(const char *list, size_t *n) {
    size_t cap = 1;
    for (const char *p = list; *p; p++) cap += *p == ',';
    int32_t *ids = malloc(sizeof *ids * cap);
    *n = 0;
    for (const char *p = list; ids && *n < cap;) {
        char *end;
        const long v = strtol(p, &end, 10);
        if (end == p || v < INT32_MIN || v > INT32_MAX || (*end != ',' && *end != '\0')) {
            free(ids);
            return NULL;
        }
        ids[(*n)++] = (int32_t)v;
        if (*end == '\0') return ids;
        p = end + 1;
    }
    free(ids);
    return NULL;
}

int cli_encode(const char *cmd, const forge_tokenizer *tok, const char *text, size_t len, int add_special,
               int32_t **ids, size_t *n) {
    *ids = NULL, *n = 0;
    forge_status st = forge_tokenizer_encode(tok, text, len, add_special, NULL, 0, n);
    if (st == FORGE_ERR_CAPACITY) { /* the count first, then the ids */
        if (!(*ids = malloc(sizeof **ids * *n))) return cli_error(cmd, "out of memory for %zu ids", *n);
        st = forge_tokenizer_encode(tok, text, len, add_special, *ids, *n, n);
    }
    if (st == FORGE_OK) return CLI_OK;
    free(*ids);
    *ids = NULL;
    return cli_fail(cmd, st);
}

void cli_sampling_apply(const cli_sampling *a, forge_sampling *s) {
    if (a->temperature >= 0) s->temperature = (float)a->temperature;
    if (a->top_k >= 0) s->top_k = a->top_k;
    if (a->top_p >= 0) s->top_p = (float)a->top_p;
    if (a->min_p >= 0) s->min_p = (float)a->min_p;
    if (a->repeat_penalty >= 0) s->repeat_penalty = (float)a->repeat_penalty;
    s->seed = (uint64_t)a->seed;
}
