/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_support.c: `forge support`, the library's support table (what runs
 * where) as the markdown table the README holds. */
#include <stdio.h>

#include "cli.h"
#include "commands.h"

#define CMD "support"

/* The FORGE_ATTN_* options of a row, in words. */
static const char *options_words(unsigned options) {
    switch (options & (FORGE_ATTN_WINDOW | FORGE_ATTN_SOFTCAP)) {
    case 0: return "-";
    case FORGE_ATTN_WINDOW: return "sliding window";
    case FORGE_ATTN_SOFTCAP: return "soft-capping";
    default: return "sliding window, soft-capping";
    }
}

static void print_row(const forge_support *r) {
    printf("| %s | %s | ", r->operation, forge_backend_name(r->backend));
    if (r->backend == FORGE_BACKEND_CPU) printf("any");
    else if (r->min_sm == 90) printf("sm_90 (H100, H200)");
    else printf("sm_%d and newer", r->min_sm);
    printf(" | ");
    const char *sep = "";
    for (int d = FORGE_F32; d <= FORGE_BF16; d++)
        if (r->dtypes & (1u << d)) printf("%s%s", sep, forge_dtype_name((forge_dtype)d)), sep = ", ";
    printf(" | ");
    if (r->n_head_dims == 0) printf("any up to 256");
    for (int i = 0; i < r->n_head_dims; i++) printf("%s%d", i ? ", " : "", r->head_dims[i]);
    printf(" | %s | %s |\n", r->kernel, options_words(r->options));
}

int cmd_support(int argc, char **argv) {
    cli_opt none[1];
    int rc = cli_parse(CMD, argc, argv, none, 0);
    if (rc != CLI_OK) return rc;
    printf("| operation | backend | GPUs | dtypes | head dims | kernel | score options |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- |\n");
    for (int i = 0; i < forge_support_count(); i++) print_row(forge_support_row(i));
    return CLI_OK;
}
