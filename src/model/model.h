/* SPDX-License-Identifier: Apache-2.0 */
/* model.h: the model engine's own header: a Hugging Face model directory
 * loaded (model_load.c over model_config.c and model_files.c) and run a
 * step at a time (model_step.c), tokens drawn (model_sample.c), and
 * generation (model_generate.c); a model split over ranks runs each on a
 * thread of its own (model_ranks.c). The layers are the core's forge_layer
 * over one paged cache each; the rest of each block runs through the
 * backend's model operations. */
#ifndef FORGE_MODEL_H
#define FORGE_MODEL_H

#include <cJSON.h>
#include <stdatomic.h>

#include "core/core.h"

/* model_config.c: config.json's object read; a config's numbers checked
 * (fn names the public call). */
forge_status model_config_parse(const cJSON *root, forge_model_config *out);
forge_status model_config_check(const forge_model_config *c, const char *fn);

/* model_files.c: the safetensors files of a directory, and their tensors
 * by name (through model.safetensors.index.json where there are shards);
 * or, for a model without files, random tensors drawn from a seed. */
typedef struct {
    forge_safetensors **files;
    int n_files;
    cJSON *weight_map; /* the index's name -> file map, or NULL for one file */
    char **names;      /* [n_files]: the files' names, for the map */
    int random;        /* no files: each tensor drawn from seed and its name */
    uint64_t seed;
} model_files;

forge_status model_files_open(const char *fn, const char *dir, model_files *f);
void model_files_close(model_files *f);
/* Rows [r0, r0 + nr) and columns [c0, c0 + nc) of the tensor of that
 * name, checked to be [d0] (d1 0: its elements [r0, r0 + nr)) or [d0, d1],
 * packed, in dtype (the whole tensor, or a rank's share of a split
 * weight): *data its bytes in the mapped file where they are already in
 * dtype and whole rows are asked for, else a buffer made for it (*owned,
 * the caller's to free; NULL when none was), converted, cut or drawn; its
 * absence is FORGE_ERR_NOT_FOUND naming it. */
forge_status model_tensor_part(const model_files *f, const char *fn, const char *name, int64_t d0, int64_t d1,
                               int64_t r0, int64_t nr, int64_t c0, int64_t nc, forge_dtype dtype, const void **data,
                               void **owned);

/* One block's weights around its layer, in backend memory. */
typedef struct {
    void *attn_norm, *mlp_norm; /* [hidden]                               */
    void *gate_up;              /* [2 * intermediate, hidden]: gate, up    */
    void *down;                 /* [hidden, intermediate]                  */
} model_block;

/* A decode step recorded as one replayable unit (model_step.c): which
 * sequences, in order, and what its layer calls baked in. */
typedef struct {
    void *rec;        /* the backend's recording, or NULL */
    int n;            /* sequences, one token each */
    int *seqs;        /* [max_seqs] */
    uint64_t *stamps; /* [layers]: each layer call's stamp at the recording */
    int reach;        /* the length every sequence may reach */
    unsigned ws_gen;  /* of the model's workspace it recorded */
} model_graph;

/* One rank of the model (tensor parallelism, Megatron's split; of a whole
 * model, the one rank): its share of the weights and what its steps work
 * in, in its context's memory. Rank r holds query heads [r * heads, (r +
 * 1) * heads) of m->split's heads, their KV heads (kv_heads of them; a KV
 * head held by several ranks where there are fewer than ranks), the output
 * projection's columns of those heads, the MLP's gate and up rows and
 * down columns [r * inter, (r + 1) * inter), and the LM head's rows [r *
 * vocab_rows, ...) (zeros past the vocabulary); the embedding and the
 * norms whole. The partial sums of the output and down projections are
 * summed over the ranks (all_reduce) before each residual; the LM head's
 * rows are gathered, and put in order on rank 0. */
typedef struct {
    forge_context *ctx;         /* rank 0's is the caller's                       */
    void *comm;                 /* the backend's communicator; NULL when whole     */
    forge_layer **layers;       /* [cfg.layers]                                    */
    forge_paged_cache **caches; /* [cfg.layers], the same sequences in each        */
    model_block *blocks;        /* [cfg.layers]                                    */
    void *embed;                /* [vocab, hidden]                                 */
    void *lm_head;              /* [vocab_rows, hidden]: embed when tied and whole */
    void *final_norm;           /* [hidden]                                        */
    /* workspace in backend memory, grown to the largest step so far */
    long ws_rows, ws_out;
    unsigned ws_gen;                 /* times it moved */
    void *x, *a, *y, *gate_up, *act; /* [ws_rows, hidden or 2 * inter or inter] */
    void *last, *logits;             /* [ws_out, hidden], [ws_out, vocab] (rank 0) */
    void *part, *gathered;           /* split: [ws_out, vocab_rows], [ranks, ws_out, vocab_rows] */
    /* the step's integers: tokens [ws_rows], the rows whose logits are
     * asked for [ws_out], each sequence's length [max_seqs]; on the host,
     * and in backend memory where the step's work reads them */
    int32_t *ints, *ints_dev;
    model_graph graph;
} model_rank;

/* A rank's share of the split dimensions (model_rank). */
typedef struct {
    int ranks;
    int heads, kv_heads, inter, vocab_rows;
} model_split;

typedef struct model_pool model_pool;

#define MODEL_MAX_RANKS 64

struct forge_model {
    forge_model_config cfg;
    forge_model_options opt;
    model_split split;
    model_rank *ranks;  /* [split.ranks] */
    model_pool *pool;   /* the ranks' threads; NULL when whole */
    atomic_int broken;  /* a rank failed after the others may have gone on */
    int failed_rank;    /* that rank, the first to fail (the others' failures follow from it) */
    /* each sequence's tokens so far, a bit per id [max_seqs][seen_words]:
     * the repetition penalty's history, kept by every step */
    uint32_t *seen;
    size_t seen_words;
    /* a sampled step's logits on the host [host_rows, vocab], and the
     * draw's scratch [vocab], made at the first */
    float *host_logits;
    long host_rows;
    forge_scored *scratch;
    /* where the backend finds the draws' fronts (sample_front): each row's
     * front [front_rows][FORGE_SAMPLE_ROW_BYTES(MODEL_FRONT_CAP)], then its
     * settings, then its sequence's seen bits; in rank 0's backend memory
     * and a host copy, laid out alike */
    void *front_dev, *front_host;
    long front_rows;
};

/* model_ranks.c: the ranks' threads, each working on its rank's device.
 * start makes them (none for a whole model, tensor_parallel 0), rank r >
 * 0's context (of ctx's backend, on the device r places after ctx's) and
 * the communicators; stop ends them after the ranks' contexts are gone. run calls
 * fn(m, r, arg) for every rank r on its thread (whole: on the caller's)
 * and returns the first failure, its message naming the rank. A rank's
 * failure after the step's collectives may have begun is abort's to
 * report (from any rank's thread): it aborts every rank's communicator,
 * which wakes the others, and marks the model broken. */
typedef forge_status (*model_rank_fn)(forge_model *m, int rank, void *arg);
forge_status model_ranks_start(forge_model *m, forge_context *ctx, const char *fn);
forge_status model_ranks_run(forge_model *m, model_rank_fn fn, void *arg);
void model_ranks_abort(forge_model *m, int rank);
/* FORGE_ERR_BACKEND: fn refused on a model that abort marked broken. */
forge_status model_broken(const char *fn);
void model_ranks_stop(forge_model *m);

/* Candidates a front holds: a trained model's top-k and top-p fronts are
 * tens to hundreds; one past this takes its row of logits to the host. */
#define MODEL_FRONT_CAP 4096

/* Sequence seq's bits of m->seen. */
static inline uint32_t *model_seen(const forge_model *m, int seq) { return m->seen + (size_t)seq * m->seen_words; }

/* model_step.c: a rank's recorded decode step dropped. */
void model_graph_free(model_rank *k);

/* model_sample.c: the next token of logits [vocab] as s says, seen the
 * tokens so far as a bit per id (for the repetition penalty; NULL: none);
 * rng advances with each draw; scratch [vocab]. */
int32_t model_sample(const float *logits, int vocab, const forge_sampling *s, const uint32_t *seen, uint64_t *rng,
                     forge_scored *scratch);
/* s's numbers in range, or FORGE_ERR_INVALID_ARGUMENT naming sampling[i]
 * (i >= 0) or sampling. */
forge_status model_check_sampling(const forge_sampling *s, int i, const char *fn);
/* Its order of candidates: descending by score, then ascending by id (a
 * stable order for ties); qsort's comparison. */
int model_order(const void *a, const void *b);
/* Its last part: top-p, min-p and the draw over the kept candidates v[0 ..
 * kept) (after temperature and top-k), sorted in that order, mass the
 * candidates' sum of exp(score - the largest), over all of them: v may
 * hold only the start of their order, as far as top-p or min-p keeps. */
int32_t model_draw_sorted(const forge_scored *v, int kept, double mass, const forge_sampling *s, uint64_t *rng);
/* The sum of exp(score - top) over v [n], in v's order. */
double model_mass(const forge_scored *v, int n, double top);
/* The token of a row drawn from its candidates c [h->count] as a backend's
 * sample_front left them (in no order; cap of them written), the very
 * token model_sample draws from the whole row with the same rng; or -1
 * where they cannot say (more than cap, or a top-p walk that would go past
 * an incomplete front): then the row is needed. */
int32_t model_draw_front(const forge_sample_head *h, forge_scored *c, int cap, int vocab, const forge_sampling *s,
                         uint64_t *rng);

#endif
