/* SPDX-License-Identifier: Apache-2.0 */
/* commands.h: the forge tool's commands; each returns the process exit code. */
#ifndef FORGE_COMMANDS_H
#define FORGE_COMMANDS_H

#include "cli.h"

int cmd_run(int argc, char **argv);
int cmd_attn(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_support(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
/* forge bench layer|prefill|decode|step (bench_*.c); argv[0] is the
 * benchmark's name. */
int bench_layer(int argc, char **argv);
int bench_prefill(int argc, char **argv);
int bench_decode(int argc, char **argv);
int bench_step(int argc, char **argv);
int bench_model(int argc, char **argv);

/* bench_decode.c, for bench_step.c: n random values of deviation 1 in
 * dtype (malloc'd), or NULL; and `batch` sequences of the cache filled with
 * len tokens of random K and V, their pages interleaved. */
void *random_host(size_t n, forge_dtype dtype, uint64_t seed);
/* A pool for sh->batch sequences of up to max_len tokens (at most INT_MAX)
 * in pages of page_size; 0, or the exit code after an error line. */
int paged_bench_config(const char *cmd, const cli_bench_shape *sh, int page_size, long max_len,
                       forge_paged_config *cfg);
forge_status fill_paged(forge_context *ctx, forge_paged_cache *cache, const int *seqs, int batch, int len);

#endif
