/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_attention.c: attention of one sequence (CPU backend), causal or not,
 * with or without a sliding window and soft-capping.
 * Unfused: QK^T and PV by OpenBLAS GEMM on blocks of
 * CPU_ATTN_ROWS query rows, so that scratch stays small and each causal block
 * reads only the keys its last row can see; a block of one row (a decode
 * step) by loops of our own (row_scores, row_values). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "cpu_attention.h"

/* In place: row[first .. end) becomes its softmax (the scores soft-capped
 * first where cap > 0), the rest of row[0 .. n) zero. Returns the log of
 * the softmax denominator (-inf when nothing is visible). */
static float softmax_span(float *row, int first, int end, int n, float cap) {
    float max = -INFINITY, sum = 0.0f;
    for (int j = first; cap > 0.0f && j < end; j++) row[j] = cap * tanhf(row[j] / cap);
    for (int j = first; j < end; j++) max = row[j] > max ? row[j] : max;
    for (int j = first; j < end; j++) {
        row[j] = expf(row[j] - max);
        sum += row[j];
    }
    for (int j = first; j < end; j++) row[j] /= sum;
    memset(row, 0, (size_t)first * sizeof *row);
    memset(row + end, 0, (size_t)(n - end) * sizeof *row);
    return end > first ? max + logf(sum) : -INFINITY;
}

/* scores[j] = scale * q . k_j for one query row over n_keys keys k_stride
 * apart. A decode step's products are small (keys x head_dim), and OpenBLAS
 * hands one of a few hundred keys to its threads, at a cost above the
 * product's: at 1k cached tokens its 540 calls took most of a step of
 * SmolLM2-135M's shape on 2 cores. Eight partial sums a key let the
 * compiler vectorise the dot product without reordering a sum. */
static void row_scores(const float *restrict q, const float *restrict k, int k_stride, int n_keys, int D, float scale,
                       float *restrict scores) {
    for (int j = 0; j < n_keys; j++, k += k_stride) {
        float acc[8] = {0};
        int d = 0;
        for (; d + 8 <= D; d += 8)
            for (int l = 0; l < 8; l++) acc[l] += q[d + l] * k[d + l];
        float sum = 0.0f;
        for (; d < D; d++) sum += q[d] * k[d];
        for (int l = 0; l < 8; l++) sum += acc[l];
        scores[j] = scale * sum;
    }
}

/* out += sum_j p[j] v_j for one query row (values k_stride apart). */
static void row_values(const float *restrict p, const float *restrict v, int k_stride, int n_keys, int D,
                       float *restrict out) {
    for (int j = 0; j < n_keys; j++, v += k_stride)
        for (int d = 0; d < D; d++) out[d] += p[j] * v[d];
}

/* The span of tokens [p, end) that lies in p's page: its count, and K's
 * (or V's, base v) first row. */
static int page_run(const cpu_paged_head *h, const float *base, int p, int end, const float **rows) {
    const int in_page = p % h->page_size, run = h->page_size - in_page;
    *rows = base + ((long)h->pages[p / h->page_size] * h->page_size + in_page) * h->row_stride;
    return run < end - p ? run : end - p;
}

float cpu_attend_row(const float *q, const cpu_paged_head *kv, int first, int end, int head_dim, float scale,
                     float softcap, float *scores, float *out) {
    const int n = end - first;
    memset(out, 0, sizeof *out * (size_t)head_dim);
    if (n <= 0) return -INFINITY;
    const float *rows;
    for (int p = first, run; p < end; p += run) {
        run = page_run(kv, kv->k, p, end, &rows);
        row_scores(q, rows, (int)kv->row_stride, run, head_dim, scale, scores + (p - first));
    }
    const float lse = softmax_span(scores, 0, n, n, softcap);
    for (int p = first, run; p < end; p += run) {
        run = page_run(kv, kv->v, p, end, &rows);
        row_values(scores + (p - first), rows, (int)kv->row_stride, run, head_dim, out);
    }
    return lse;
}

static int min_int(int x, int y) { return x < y ? x : y; }
static int max_int(int x, int y) { return x > y ? x : y; }

/* Keys [*first, *end) that the query at position pos sees. */
static void visible_keys(const cpu_attention_args *a, int pos, int *first, int *end) {
    *end = a->causal ? max_int(0, min_int(a->n_keys, pos - a->k_pos0 + 1)) : a->n_keys;
    *first = a->window > 0 ? min_int(*end, max_int(0, pos - a->window + 1 - a->k_pos0)) : 0;
}

void cpu_attention(const cpu_attention_args *a, float *scores) {
    const int D = a->head_dim, group = a->heads / a->kv_heads;
    for (int h = 0; h < a->heads; h++) {
        for (int i0 = 0; i0 < a->n_queries; i0 += CPU_ATTN_ROWS) {
            const int rows = min_int(a->n_queries - i0, CPU_ATTN_ROWS), pos0 = a->q_pos0 + i0;
            /* keys the block's rows see: from its first row's first to its last row's end */
            int k0, unused, end;
            visible_keys(a, pos0, &k0, &unused);
            visible_keys(a, pos0 + rows - 1, &unused, &end);
            const int n_keys = end > k0 ? end - k0 : 0;
            const float *k = a->k + (long)(h / group) * a->kv_head_stride + (long)k0 * a->k_stride;
            const float *v = a->v + (long)(h / group) * a->kv_head_stride + (long)k0 * a->k_stride;
            const float *q = a->q + (long)i0 * a->q_stride + h * D;
            float *out = a->out + (long)i0 * a->out_stride + h * D;
            /* scores[r, j] = q_r . k_(k0 + j) * scale   (rows, n_keys) */
            if (n_keys > 0 && rows == 1)
                row_scores(q, k, a->k_stride, n_keys, D, a->scale, scores);
            else if (n_keys > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_keys, D, a->scale, q,
                            a->q_stride, k, a->k_stride, 0.0f, scores, n_keys);
            for (int r = 0; r < rows; r++) {
                /* both ends move forward with the position: k0 <= first <= end_r <= k0 + n_keys */
                int first, end_r;
                visible_keys(a, pos0 + r, &first, &end_r);
                float lse = softmax_span(scores + (long)r * n_keys, first - k0, end_r - k0, n_keys, a->softcap);
                if (a->lse) a->lse[h * a->lse_stride + i0 + r] = lse;
                if (n_keys == 0) memset(out + (long)r * a->out_stride, 0, sizeof(float) * (size_t)D);
            }
            /* out[r, :] = sum_j p[r, j] v_(k0 + j)   (rows, D) */
            if (n_keys > 0 && rows == 1) {
                memset(out, 0, sizeof *out * (size_t)D);
                row_values(scores, v, a->k_stride, n_keys, D, out);
            }
            else if (n_keys > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, n_keys, 1.0f, scores,
                            n_keys, v, a->k_stride, 0.0f, out, a->out_stride);
        }
    }
}
