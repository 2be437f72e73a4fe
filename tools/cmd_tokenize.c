/* SPDX-License-Identifier: Apache-2.0 */
/* cmd_tokenize.c: `forge tokenize`, a text's token ids under a Hugging Face
 * tokenizer.json, on one line, separated by spaces; and `forge
 * detokenize`, ids back to text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

#define CMD "tokenize"

/* The file's bytes (malloc'd) and their count, or NULL. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    const int failed = ferror(f);
    fclose(f);
    if (failed) free(buf), buf = NULL;
    *len = n;
    return buf;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL;
    int no_special = 0;
    cli_opt opts[] = {{"--model", OPT_STRING, &model, 0}, {"--text", OPT_STRING, &text, 0},
                      {"--file", OPT_STRING, &file, 0}, {"--no-special", OPT_FLAG, &no_special, 0}};
    int rc = cli_parse(CMD, argc, argv, opts, 4);
    if (rc != CLI_OK) return rc;
    if (!model) return cli_usage(CMD, "--model is required");
    if (!text == !file) return cli_usage(CMD, "give the text by --text or --file, one of them");
    size_t len = 0;
    char *owned = NULL;
    if (file && !(owned = read_all(file, &len))) return cli_error(CMD, "cannot read %s", file);
    if (text) len = strlen(text);
    forge_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    const forge_status st = forge_tokenizer_load(model, &tok);
    rc = st == FORGE_OK ? cli_encode(CMD, tok, owned ? owned : text, len, !no_special, &ids, &n) : cli_fail(CMD, st);
    if (rc == CLI_OK) {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    free(ids);
    free(owned);
    forge_tokenizer_free(tok);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    static const char cmd[] = "detokenize";
    const char *model = NULL, *list = NULL;
    int skip = 0;
    cli_opt opts[] = {{"--model", OPT_STRING, &model, 0}, {"--ids", OPT_STRING, &list, 0},
                      {"--skip-special", OPT_FLAG, &skip, 0}};
    int rc = cli_parse(cmd, argc, argv, opts, 3);
    if (rc != CLI_OK) return rc;
    if (!model) return cli_usage(cmd, "--model is required");
    if (!list) return cli_usage(cmd, "--ids is required");
    size_t n = 0, len = 0;
    int32_t *ids = cli_parse_ids(list, &n);
    if (!ids) return cli_usage(cmd, "--ids '%s' is not a list of integers separated by commas", list);
    forge_tokenizer *tok = NULL;
    char *text = NULL;
    forge_status st = forge_tokenizer_load(model, &tok);
    if (st == FORGE_OK) st = forge_tokenizer_decode(tok, ids, n, skip, NULL, 0, &len);
    if (st == FORGE_ERR_CAPACITY) {
        st = (text = malloc(len + 1)) ? FORGE_OK : FORGE_ERR_OUT_OF_MEMORY;
        if (st == FORGE_OK) st = forge_tokenizer_decode(tok, ids, n, skip, text, len + 1, &len);
        else rc = cli_error(cmd, "out of memory for %zu bytes", len);
    }
    if (st == FORGE_OK) {
        fwrite(text, 1, len, stdout);
        printf("\n");
    } else if (!rc) {
        rc = cli_fail(cmd, st);
    }
    free(text);
    free(ids);
    forge_tokenizer_free(tok);
    return rc;
}
