/* SPDX-License-Identifier: Apache-2.0 */
/* model_sample.c: the next token from logits, as transformers' generate
 * draws it: the repetition penalty over the tokens so far (a seen token's
 * positive logit divided by it, a negative one multiplied), then the
 * warpers in its order (temperature, top-k keeping ties with the k-th,
 * top-p keeping the most likely tokens whose probability reaches p, at
 * least one, min-p dropping tokens below min_p times the likeliest), then
 * a draw from the softmax of what is left. Greedy takes the first largest
 * logit after the penalty. Only as much of the vocabulary is sorted as the
 * warpers can keep, found by selection: with top-k, the k candidates (and
 * ties with the k-th); without, the tokens min-p keeps, and of those the
 * likeliest that hold top-p's mass. They are the same tokens in the same
 * order as a sort of the whole vocabulary would put first. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "file.h"
#include "model.h"

forge_sampling forge_sampling_greedy(void) {
    forge_sampling s = {0.0f, 0, 1.0f, 0.0f, 1.0f, 0};
    return s;
}

/* A number of generation_config.json in [lo, hi] (dflt when absent or null). */
static forge_status read_number(const cJSON *root, const char *name, double lo, double hi, double dflt, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    *out = dflt;
    if (!v || cJSON_IsNull(v)) return FORGE_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
        return forge_fail(FORGE_ERR_FORMAT, "forge_sampling_read: generation_config.json's %s is not a number in "
                          "[%g, %g]", name, lo, hi);
    *out = v->valuedouble;
    return FORGE_OK;
}

forge_status forge_sampling_read(const char *dir, forge_sampling *out) {
    static const char fn[] = "forge_sampling_read";
    FORGE_CHECK_NOT_NULL(dir, fn);
    FORGE_CHECK_NOT_NULL(out, fn);
    cJSON *root;
    forge_status st = forge_read_json(fn, dir, "generation_config.json", &root);
    forge_sampling s = forge_sampling_greedy();
    if (st == FORGE_OK && root && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "do_sample"))) {
        double t = 1, k = 50, p = 1, m = 0, r = 1;
        st = read_number(root, "temperature", 0, 1e6, 1.0, &t);
        if (st == FORGE_OK) st = read_number(root, "top_k", 0, 1 << 30, 50, &k);
        if (st == FORGE_OK) st = read_number(root, "top_p", 0, 1, 1.0, &p);
        if (st == FORGE_OK) st = read_number(root, "min_p", 0, 1, 0.0, &m);
        if (st == FORGE_OK) st = read_number(root, "repetition_penalty", 1e-6, 1e6, 1.0, &r);
        s = (forge_sampling){(float)t, (int)k, (float)p, (float)m, (float)r, 0};
        if (st == FORGE_OK && !(s.top_p > 0.0f))
            st = forge_fail(FORGE_ERR_FORMAT, "%s: generation_config.json's top_p is 0", fn);
    }
    cJSON_Delete(root);
    if (st == FORGE_OK) *out = s;
    return st;
}

/* splitmix64: a uniform double in [0, 1). */
static double uniform(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

int model_order(const void *a, const void *b) {
    const forge_scored *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->id - y->id;
}

static void swap(forge_scored *a, forge_scored *b) {
    const forge_scored t = *a;
    *a = *b, *b = t;
}

/* Puts the k first of v[0 .. n) in model_order's order into v[0 .. k), in no
 * order (quickselect: O(n) expected, where a sort of a 128k vocabulary
 * costs milliseconds a token). */
static void select_first(forge_scored *v, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        swap(&v[lo + (hi - lo) / 2], &v[hi]); /* the middle as pivot, kept at hi */
        int store = lo;
        for (int i = lo; i < hi; i++)
            if (model_order(&v[i], &v[hi]) < 0) swap(&v[i], &v[store++]);
        swap(&v[store], &v[hi]);
        if (store == k - 1 || store == k) return;
        if (store < k) lo = store + 1;
        else hi = store - 1;
    }
}

/* Score buckets below the largest, FRONT_RANGE wide in all (a token further
 * down weighs under exp(-40) of the likeliest; it lands in the last). */
enum { FRONT_BUCKETS = 1024 };
#define FRONT_RANGE 40.0

static int bucket_of(float score, double top) {
    const double b = (top - score) * (FRONT_BUCKETS / FRONT_RANGE);
    return b < FRONT_BUCKETS - 1 ? (int)b : FRONT_BUCKETS - 1;
}

/* Moves to the front of v [n] (top its largest score) the tokens of the
 * fewest top score buckets that hold at least count tokens and at least
 * about share of the mass (each bucket's counted at its lowest score, so
 * never more than it holds); returns how many. A bucket is a range of
 * scores, so the front is a start of model_order's order, with
 * every tie of its last token: two passes over v, where a selection over
 * the whole vocabulary is several, each slower. */
static int front_of(forge_scored *v, int n, double top, int count, double share) {
    int counts[FRONT_BUCKETS] = {0};
    for (int i = 0; i < n; i++) counts[bucket_of(v[i].score, top)]++;
    int last = 0, seen = counts[0];
    double mass = counts[0] * exp(-FRONT_RANGE / FRONT_BUCKETS);
    while (last < FRONT_BUCKETS - 1 && (seen < count || mass < share)) {
        last++;
        seen += counts[last];
        mass += counts[last] * exp(-(last + 1) * (FRONT_RANGE / FRONT_BUCKETS));
    }
    int front = 0;
    for (int i = 0; i < n; i++)
        if (bucket_of(v[i].score, top) <= last) swap(&v[i], &v[front++]);
    return front;
}

/* The top-k candidates of v [n] (a start of the order holding at least k,
 * with every tie of its last) sorted: the k first in model_order's
 * order and every other token tied with the k-th, as a sort of the whole
 * would put them first; their count. */
static int top_k_sorted(forge_scored *v, int n, int k) {
    select_first(v, n, k);
    float kth = v[0].score; /* the k-th's score: the lowest of the k */
    for (int i = 1; i < k; i++) kth = v[i].score < kth ? v[i].score : kth;
    int kept = k;
    for (int i = k; i < n; i++)
        if (v[i].score == kth) swap(&v[i], &v[kept++]);
    qsort(v, (size_t)kept, sizeof *v, model_order);
    return kept;
}

double model_mass(const forge_scored *v, int n, double top) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp(v[i].score - top);
    return sum;
}

/* Without top-k: sorts the start of v [n] (top the largest score, mass the
 * whole's) as far as top-p and min-p can keep, and returns how far: the
 * tokens min-p keeps are moved first; of those, the front that holds
 * top_p's share is sorted, as far as the walk model_draw_sorted makes again
 * reaches top_p. */
static int sorted_prefix(forge_scored *v, int n, const forge_sampling *s, double top, double mass) {
    int limit = n;
    if (s->min_p > 0.0f) {
        limit = 0;
        for (int i = 0; i < n; i++)
            if (exp(v[i].score - top) >= s->min_p) swap(&v[i], &v[limit++]);
    }
    if (s->top_p >= 1.0f) {
        qsort(v, (size_t)limit, sizeof *v, model_order);
        return limit;
    }
    /* the front holds top_p's share but for rounding; where the walk falls
     * short of it, the rest is sorted too */
    double cum = 0.0;
    for (int sorted = 0, end = front_of(v, limit, top, 1, s->top_p * mass);; end = limit) {
        qsort(v + sorted, (size_t)(end - sorted), sizeof *v, model_order);
        for (; sorted < end; sorted++)
            if ((cum += exp(v[sorted].score - top) / mass) >= s->top_p) return sorted + 1;
        if (end == limit) return limit;
    }
}

forge_status model_check_sampling(const forge_sampling *s, int i, const char *fn) {
    if (s->temperature >= 0.0f && s->top_p > 0.0f && s->top_p <= 1.0f && s->min_p >= 0.0f && s->min_p <= 1.0f &&
        s->repeat_penalty > 0.0f && s->top_k >= 0)
        return FORGE_OK;
    char what[32] = "sampling";
    if (i >= 0) snprintf(what, sizeof what, "sampling[%d]", i);
    return forge_fail(FORGE_ERR_INVALID_ARGUMENT, "%s: %s needs temperature >= 0, top_k >= 0, 0 < top_p <= 1, "
                      "0 <= min_p <= 1 and repeat_penalty > 0", fn, what);
}

int32_t model_sample(const float *logits, int vocab, const forge_sampling *s, const uint32_t *seen, uint64_t *rng,
                     forge_scored *v) {
    for (int i = 0; i < vocab; i++) v[i] = (forge_scored){logits[i], i};
    if (s->repeat_penalty != 1.0f && seen)
        for (int i = 0; i < vocab; i++)
            if (seen[i / 32] >> (i % 32) & 1)
                v[i].score = logits[i] > 0 ? logits[i] / s->repeat_penalty : logits[i] * s->repeat_penalty;
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (v[i].score > v[best].score) best = i;
    if (s->temperature <= 0.0f) return best;
    for (int i = 0; i < vocab; i++) v[i] = (forge_scored){v[i].score / s->temperature, i};
    const double top = v[best].score;
    if (s->top_k > 0 && s->top_k < vocab) {
        const int kept = top_k_sorted(v, front_of(v, vocab, top, s->top_k, 0.0), s->top_k);
        return model_draw_sorted(v, kept, model_mass(v, kept, top), s, rng);
    }
    const double mass = model_mass(v, vocab, top);
    return model_draw_sorted(v, sorted_prefix(v, vocab, s, top, mass), mass, s, rng);
}

int32_t model_draw_front(const forge_sample_head *h, forge_scored *c, int cap, int vocab, const forge_sampling *s,
                         uint64_t *rng) {
    if (h->count < 1 || h->count > cap) return -1;
    if (s->temperature <= 0.0f) return c[0].id;
    if (s->top_k > 0 && s->top_k < vocab) {
        if (h->count < s->top_k) return -1;
        const int kept = top_k_sorted(c, h->count, s->top_k);
        return model_draw_sorted(c, kept, model_mass(c, kept, c[0].score), s, rng);
    }
    qsort(c, (size_t)h->count, sizeof *c, model_order);
    if (!h->complete) { /* the walk must reach top_p within the front */
        if (s->top_p >= 1.0f) return -1;
        double cum = 0.0;
        int n = 0;
        while (n < h->count && cum < s->top_p) cum += exp(c[n++].score - (double)c[0].score) / h->mass;
        if (cum < s->top_p) return -1;
    }
    return model_draw_sorted(c, h->count, h->mass, s, rng);
}

int32_t model_draw_sorted(const forge_scored *v, int kept, double mass, const forge_sampling *s, uint64_t *rng) {
    /* probabilities of the kept tokens, largest first */
    const double top = v[0].score;
    double sum = mass;
    if (s->top_p < 1.0f) {
        double cum = 0.0;
        int n = 0;
        while (n < kept && cum < s->top_p) cum += exp(v[n++].score - top) / sum;
        kept = n > 0 ? n : 1;
        sum = 0.0;
        for (int i = 0; i < kept; i++) sum += exp(v[i].score - top);
    }
    if (s->min_p > 0.0f) { /* below min_p times the likeliest, of what top-p left */
        int n = 1;
        while (n < kept && exp(v[n].score - top) >= s->min_p) n++;
        kept = n;
        sum = 0.0;
        for (int i = 0; i < kept; i++) sum += exp(v[i].score - top);
    }
    double u = uniform(rng) * sum;
    for (int i = 0; i < kept; i++)
        if ((u -= exp(v[i].score - top)) < 0) return v[i].id;
    return v[kept - 1].id;
}
