/* SPDX-License-Identifier: Apache-2.0 */
/* cli.h: what the forge tool's commands share: option parsing, one-line
 * errors with the tool's exit codes, progress on a terminal, and statistics
 * of timings. */
#ifndef FORGE_CLI_H
#define FORGE_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "forge.h"

/* The tool's exit codes (README, forge help). */
enum {
    CLI_OK = 0,
    CLI_CHECK_FAILED = 1, /* it ran, and a result is outside its tolerance       */
    CLI_USAGE = 2,        /* the command line is wrong: an option, a value       */
    CLI_RUNTIME = 3,      /* it could not run: a file, the library, the device   */
};

typedef enum { OPT_INT, OPT_FLOAT, OPT_STRING, OPT_FLAG } cli_opt_kind;

typedef struct {
    const char *name; /* "--heads" */
    cli_opt_kind kind;
    void *dst;        /* int *, double *, const char **, or int * (flag set to 1) */
    int given;        /* set by cli_parse: the option was on the command line */
} cli_opt;

/* Parses argv[1 .. argc) (argv[0] is the command's name) against opts with
 * getopt_long: "--name value" and "--name=value", and for an option named
 * by one letter ("-n") "-n value". An unknown option, a
 * missing value, a value that does not parse, an option given twice, or an
 * argument that is no option prints one line and returns CLI_USAGE;
 * otherwise CLI_OK, with each option's `given` set. */
int cli_parse(const char *cmd, int argc, char **argv, cli_opt *opts, int n_opts);

/* Prints "forge CMD: message (see forge help CMD)" to stderr and returns
 * CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "forge CMD: message" to stderr and returns CLI_RUNTIME. */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "forge CMD: <forge_last_error()> (<status>)" and returns CLI_RUNTIME. */
int cli_fail(const char *cmd, forge_status st);

/* The ids of "1,2,3" (malloc'd) and their count; NULL where one does not
 * parse as a 32-bit integer or the list is malformed. */
int32_t *cli_parse_ids(const char *list, size_t *n);

/* The ids of len bytes of text under tok (*ids malloc'd, *n of them; NULL
 * for none), and CLI_OK; or the exit code after the error's line. */
int cli_encode(const char *cmd, const forge_tokenizer *tok, const char *text, size_t len, int add_special,
               int32_t **ids, size_t *n);

/* The backend named "auto", "cpu" or "cuda", and CLI_OK; for any other
 * name, cli_usage's line naming --backend and CLI_USAGE. */
int cli_backend(const char *cmd, const char *name, forge_backend *out);

/* The dtype named "fp32", "fp16" or "bf16", and CLI_OK; for any other name,
 * cli_usage's line naming --dtype and CLI_USAGE. */
int cli_dtype(const char *cmd, const char *name, forge_dtype *out);

/* The sampling options (--temperature, --top-k, --top-p, --min-p,
 * --repeat-penalty, --seed): below 0 where not given. CLI_SAMPLING_OPTS(a)
 * lists them in a command's cli_opt table; cli_sampling_apply sets into s
 * those given, and the seed. */
typedef struct {
    double temperature, top_p, min_p, repeat_penalty;
    int top_k, seed;
} cli_sampling;
#define CLI_SAMPLING_NONE {-1, -1, -1, -1, -1, 0}
#define CLI_SAMPLING_OPTS(a)                                                                                  \
    {"--temperature", OPT_FLOAT, &(a)->temperature, 0}, {"--top-k", OPT_INT, &(a)->top_k, 0},               \
        {"--top-p", OPT_FLOAT, &(a)->top_p, 0}, {"--min-p", OPT_FLOAT, &(a)->min_p, 0},                     \
        {"--repeat-penalty", OPT_FLOAT, &(a)->repeat_penalty, 0}, {"--seed", OPT_INT, &(a)->seed, 0}
void cli_sampling_apply(const cli_sampling *a, forge_sampling *s);

/* The shape options every attention benchmark takes. */
typedef struct {
    int batch, len, heads, kv_heads, head_dim, iters, warmup, json;
    forge_dtype dtype;
    forge_backend backend;
} cli_bench_shape;

/* Bounds of the benchmarks' options, checked before anything is allocated. */
#define CLI_MAX_BATCH 65536
#define CLI_MAX_LEN (1 << 30)
#define CLI_MAX_HEADS 65536
#define CLI_MAX_ITERS 1000000

/* Parses --json, --batch, len_opt (the sequence length: "--seq",
 * "--kv-len"), --heads, --kv-heads, --head-dim, --dtype (bf16 by default),
 * --iters, --warmup and --backend, with the command's own `extra` options,
 * into *s (batch, iters and warmup keep the caller's defaults), and checks
 * each against its bound; kv_heads 0 becomes heads. Returns CLI_OK or the
 * exit code. */
int cli_parse_bench_shape(const char *cmd, const char *len_opt, int argc, char **argv, cli_opt *extra,
                          int n_extra, cli_bench_shape *s);

/* Progress of a long run, on stderr and only when stderr is a terminal:
 * "forge CMD: what i/n" rewritten in place; cli_progress_done clears it and
 * prints the time since cli_progress_start. */
void cli_progress_start(void);
void cli_progress(const char *cmd, const char *what, int i, int n);
void cli_progress_done(const char *cmd);

/* Wall-clock microseconds. */
double cli_now_us(void);

/* Sorts v[0 .. n) and returns its q-quantile (0.5: median), nearest rank. */
double cli_quantile(double *v, int n, double q);

#endif
