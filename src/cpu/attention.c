/* attention.c: causal attention of one sequence (CPU backend). Unfused, as the
 * seed's path: QK^T and PV by OpenBLAS GEMM on blocks of CPU_ATTN_ROWS query
 * rows, so that scratch stays small and each block reads only the keys its
 * last row can see. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "attention.h"

/* In place: row[0 .. visible) becomes its softmax, row[visible .. n) zero. */
static void softmax_causal_row(float *row, int visible, int n) {
    float max = row[0];
    for (int j = 1; j < visible; j++) max = row[j] > max ? row[j] : max;
    float sum = 0.0f;
    for (int j = 0; j < visible; j++) {
        row[j] = expf(row[j] - max);
        sum += row[j];
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < visible; j++) row[j] *= inv;
    memset(row + visible, 0, (size_t)(n - visible) * sizeof *row);
}

void cpu_attention(const cpu_attention_args *a, float *scores) {
    const int D = a->head_dim, group = a->heads / a->kv_heads;
    const float scale = 1.0f / sqrtf((float)D);
    for (int h = 0; h < a->heads; h++) {
        const float *k = a->k + (long)(h / group) * a->kv_head_stride;
        const float *v = a->v + (long)(h / group) * a->kv_head_stride;
        for (int i0 = 0; i0 < a->n_queries; i0 += CPU_ATTN_ROWS) {
            int rows = a->n_queries - i0 < CPU_ATTN_ROWS ? a->n_queries - i0 : CPU_ATTN_ROWS;
            /* keys visible to the block's last row */
            int n_keys = a->q_pos0 + i0 + rows - a->k_pos0;
            const float *q = a->q + (long)i0 * a->q_stride + h * D;
            float *out = a->out + (long)i0 * a->out_stride + h * D;
            /* scores[r, j] = q_r . k_j * scale   (rows, n_keys) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_keys, D, scale, q,
                        a->q_stride, k, D, 0.0f, scores, n_keys);
            for (int r = 0; r < rows; r++) {
                int visible = a->q_pos0 + i0 + r - a->k_pos0 + 1;
                softmax_causal_row(scores + (long)r * n_keys, visible, n_keys);
            }
            /* out[r, :] = sum_j p[r, j] v_j   (rows, D) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, D, n_keys, 1.0f, scores,
                        n_keys, v, D, 0.0f, out, a->out_stride);
        }
    }
}
