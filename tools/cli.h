/* SPDX-License-Identifier: Apache-2.0 */
/* cli.h: what the forge tool's commands share: option parsing, one-line
 * errors, and statistics of timings. */
#ifndef FORGE_CLI_H
#define FORGE_CLI_H

#include "forge.h"

typedef enum { OPT_INT, OPT_FLOAT, OPT_STRING, OPT_FLAG } cli_opt_kind;

typedef struct {
    const char *name; /* "--heads" */
    cli_opt_kind kind;
    void *dst;        /* int *, double *, const char **, or int * (flag set to 1) */
} cli_opt;

/* Parses argv[0 .. argc) against opts; prints one line and returns -1 on an
 * unknown option, a missing value or a value that does not parse. */
int cli_parse(const char *cmd, int argc, char **argv, const cli_opt *opts, int n_opts);

/* Prints "forge CMD: message" to stderr and returns the exit code 1. */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "forge CMD: <forge_last_error()>" and returns the exit code 1. */
int cli_fail(const char *cmd, forge_status st);

/* The backend named "auto", "cpu" or "cuda", and 0; for any other name,
 * cli_error's line naming --backend and its exit code 1. */
int cli_backend(const char *cmd, const char *name, forge_backend *out);

/* The dtype named "fp32", "fp16" or "bf16", and 0; for any other name,
 * cli_error's line naming --dtype and its exit code 1. */
int cli_dtype(const char *cmd, const char *name, forge_dtype *out);

/* The shape options every attention benchmark takes. */
typedef struct {
    int batch, len, heads, kv_heads, head_dim, iters, warmup, json;
    forge_dtype dtype;
    forge_backend backend;
} cli_bench_shape;

/* Parses --json, --batch, len_opt (the sequence length: "--seq",
 * "--kv-len"), --heads, --kv-heads, --head-dim, --dtype (bf16 by default),
 * --iters, --warmup and --backend, with the command's own `extra` options,
 * into *s (batch, iters and warmup keep the caller's defaults), and checks
 * them; kv_heads 0 becomes heads. Returns 0 or the exit code. */
int cli_parse_bench_shape(const char *cmd, const char *len_opt, int argc, char **argv, const cli_opt *extra,
                          int n_extra, cli_bench_shape *s);

/* Wall-clock microseconds. */
double cli_now_us(void);

/* Sorts v[0 .. n) and returns its q-quantile (0.5: median), nearest rank. */
double cli_quantile(double *v, int n, double q);

#endif
