/* SPDX-License-Identifier: Apache-2.0 */
/* cpu_attention.c: attention of one sequence (CPU backend), causal or not.
 * Unfused: QK^T and PV by OpenBLAS GEMM on blocks of
 * CPU_ATTN_ROWS query rows, so that scratch stays small and each causal block
 * reads only the keys its last row can see; a block of one row (a decode
 * step) by GEMV, which reads K and V where they lie instead of packing them
 * first. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "cpu_attention.h"

/* In place: row[0 .. visible) becomes its softmax, row[visible .. n) zero.
 * Returns the log of the softmax denominator (-inf when nothing is visible). */
static float softmax_row(float *row, int visible, int n) {
    float max = -INFINITY, sum = 0.0f;
    for (int j = 0; j < visible; j++) max = row[j] > max ? row[j] : max;
    for (int j = 0; j < visible; j++) {
        row[j] = expf(row[j] - max);
        sum += row[j];
    }
    for (int j = 0; j < visible; j++) row[j] /= sum;
    memset(row + visible, 0, (size_t)(n - visible) * sizeof *row);
    return visible > 0 ? max + logf(sum) : -INFINITY;
}

static int min_int(int x, int y) { return x < y ? x : y; }

void cpu_attention(const cpu_attention_args *a, float *scores) {
    const int D = a->head_dim, group = a->heads / a->kv_heads;
    for (int h = 0; h < a->heads; h++) {
        const float *k = a->k + (long)(h / group) * a->kv_head_stride;
        const float *v = a->v + (long)(h / group) * a->kv_head_stride;
        for (int i0 = 0; i0 < a->n_queries; i0 += CPU_ATTN_ROWS) {
            const int rows = min_int(a->n_queries - i0, CPU_ATTN_ROWS);
            /* keys the block's last row can see */
            int n_keys = a->causal ? min_int(a->n_keys, a->q_pos0 + i0 + rows - a->k_pos0) : a->n_keys;
            if (n_keys < 0) n_keys = 0;
            const float *q = a->q + (long)i0 * a->q_stride + h * D;
            float *out = a->out + (long)i0 * a->out_stride + h * D;
            /* scores[r, j] = q_r . k_j * scale   (rows, n_keys) */
            if (n_keys > 0 && rows == 1)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, n_keys, D, a->scale, k, a->k_stride, q, 1, 0.0f,
                            scores, 1);
            else if (n_keys > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_keys, D, a->scale, q,
                            a->q_stride, k, a->k_stride, 0.0f, scores, n_keys);
            for (int r = 0; r < rows; r++) {
                int visible = a->causal ? min_int(n_keys, a->q_pos0 + i0 + r - a->k_pos0 + 1) : n_keys;
                if (visible < 0) visible = 0;
                float lse = softmax_row(scores + (long)r * n_keys, visible, n_keys);
                if (a->lse) a->lse[h * a->lse_stride + i0 + r] = lse;
                if (n_keys == 0) memset(out + (long)r * a->out_stride, 0, sizeof(float) * (size_t)D);
            }
            /* out[r, :] = sum_j p[r, j] v_j   (rows, D) */
            if (n_keys > 0 && rows == 1)
                cblas_sgemv(CblasRowMajor, CblasTrans, n_keys, D, 1.0f, v, a->k_stride, scores, 1, 0.0f, out, 1);
            else if (n_keys > 0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, n_keys, 1.0f, scores,
                            n_keys, v, a->k_stride, 0.0f, out, a->out_stride);
        }
    }
}
