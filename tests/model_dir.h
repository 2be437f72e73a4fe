/* SPDX-License-Identifier: Apache-2.0 */
/* model_dir.h: tiny Hugging Face model directories with random weights,
 * written by the tests (config.json and safetensors, one file or two
 * shards with their index), and the same weights as floats for the float64
 * reference (model_dir.c). */
#ifndef FORGE_TEST_MODEL_DIR_H
#define FORGE_TEST_MODEL_DIR_H

#include "ref_model.h"
#include "test_util.h"

/* A model to write: its config.json's fields and how its files are laid. */
typedef struct {
    const char *arch;
    int vocab, hidden, inter, layers, heads, kv_heads, head_dim, max_pos;
    int tie, llama3_scaling, shards;
    forge_dtype file_dtype; /* of the tensors in the files */
    const char *extra;      /* more config.json fields, or "" */
} md_spec;

/* Random weights, kept as floats (rounded to the file's dtype) for the
 * reference. */
typedef struct {
    forge_model_config cfg;
    int n;          /* tensors */
    char **names;
    float **data;
    int64_t (*shape)[2];
    ref_block *blocks;
    ref_model ref;
} md_weights;

void md_make_weights(md_weights *w, const md_spec *s, const forge_model_config *cfg, uint64_t seed);
void md_free_weights(md_weights *w);
/* config.json; the spec's extra fields come first, so that where they name
 * a field again theirs is the one read. */
void md_write_config(const char *dir, const md_spec *s);
/* dir/name holding text. */
void md_write_text(const char *dir, const char *name, const char *text);
/* config.json and the weights, whole or in shards. */
void md_write_model(const char *dir, const md_spec *s, const md_weights *w);

/* A model written to a new temporary directory and loaded in fp32 on the
 * backend with room for max_seqs sequences and max_tokens tokens: its
 * directory, config, weights (as floats, for the reference), context and
 * model. */
typedef struct {
    char *dir;
    forge_model_config cfg;
    md_weights w;
    forge_context *ctx;
    forge_model *m;
} md_model;

void md_model_open(md_model *mm, const md_spec *s, uint64_t seed, forge_backend backend, int max_seqs, int max_tokens);
/* The same split over `ranks` ranks (forge_model_options.tensor_parallel);
 * the load's status (mm->m NULL where it failed). */
forge_status md_model_open_split(md_model *mm, const md_spec *s, uint64_t seed, forge_backend backend, int max_seqs,
                                 int max_tokens, int ranks);
/* md_model_open's directory, config and weights alone (no context, no model). */
void md_model_write(md_model *mm, const md_spec *s, uint64_t seed);
/* Frees it all (what there is) and removes the directory. */
void md_model_close(md_model *mm);
/* A new temporary directory (malloc'd), and its removal with all it holds. */
char *md_temp_dir(void);
void md_remove_dir(char *dir);

#endif
