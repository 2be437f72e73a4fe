/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_linear.c: the layer's projections, y = x W^T + b: through cuBLASLt,
 * planned once per token count, with the bias in the GEMM's epilogue,
 * inputs and outputs in the layer's dtype, float32 accumulation; or for a
 * small fp32 call, linear_small.cu's GEMM, where cuBLASLt is all latency. */
#include <string.h>

#include "cuda_backend.h"

void lt_linear_free(lt_linear *g) {
    if (g->desc) cublasLtMatmulDescDestroy(g->desc);
    if (g->w) cublasLtMatrixLayoutDestroy(g->w);
    if (g->x) cublasLtMatrixLayoutDestroy(g->x);
    if (g->y) cublasLtMatrixLayoutDestroy(g->y);
    memset(g, 0, sizeof *g);
}

static cudaDataType_t cuda_type(forge_dtype dtype) {
    return dtype == FORGE_BF16 ? CUDA_R_16BF : dtype == FORGE_F16 ? CUDA_R_16F : CUDA_R_32F;
}

/* In cuBLASLt's column-major terms: y^T = op_T(W stored [in, out]) x^T. */
forge_status lt_linear_plan(cuda_ctx *c, lt_linear *g, forge_dtype dtype, const void *bias, int tokens, int in,
                            int out, const char *fn) {
    if (g->tokens == tokens) return FORGE_OK;
    lt_linear_free(g);
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const cudaDataType_t t = cuda_type(dtype);
    BLAS_TRY(fn, cublasLtMatmulDescCreate(&g->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    BLAS_TRY(fn, cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    BLAS_TRY(fn, cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (bias) { /* in y's dtype, cuBLASLt's default for a bias */
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        BLAS_TRY(fn, cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        BLAS_TRY(fn, cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    BLAS_TRY(fn, cublasLtMatrixLayoutCreate(&g->w, t, (uint64_t)in, (uint64_t)out, in));
    BLAS_TRY(fn, cublasLtMatrixLayoutCreate(&g->x, t, (uint64_t)in, (uint64_t)tokens, in));
    BLAS_TRY(fn, cublasLtMatrixLayoutCreate(&g->y, t, (uint64_t)out, (uint64_t)tokens, out));
    cublasLtMatmulPreference_t pref;
    BLAS_TRY(fn, cublasLtMatmulPreferenceCreate(&pref));
    const size_t ws = WORKSPACE_BYTES;
    cublasLtMatmulHeuristicResult_t result;
    int found = 0;
    cublasStatus_t b = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    if (b == CUBLAS_STATUS_SUCCESS)
        b = cublasLtMatmulAlgoGetHeuristic(c->lt, g->desc, g->w, g->x, g->y, g->y, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (b != CUBLAS_STATUS_SUCCESS) return blas_err(fn, "cublasLtMatmulAlgoGetHeuristic", b);
    if (found < 1)
        return forge_fail(FORGE_ERR_BACKEND, "%s: cuBLASLt has no algorithm for a %dx%dx%d %s GEMM", fn, tokens, out,
                          in, forge_dtype_name(dtype));
    g->algo = result.algo;
    g->tokens = tokens;
    return FORGE_OK;
}

forge_status lt_linear_run(cuda_ctx *c, const lt_linear *g, void *y, const void *x, const void *w, const char *fn) {
    const float one = 1.0f, zero = 0.0f;
    BLAS_TRY(fn, cublasLtMatmul(c->lt, g->desc, &one, w, g->w, x, g->x, &zero, y, g->y, y, g->y,
                                                   &g->algo, c->workspace, WORKSPACE_BYTES, c->stream));
    return FORGE_OK;
}

/* Not with qk_norm: the small QKV GEMM rotates in its epilogue, before the
 * heads could be normalised. */
int cuda_small_gemm(const forge_layer *layer, int tokens, int in, int out) {
    return layer->cfg.dtype == FORGE_F32 && !layer->cfg.qk_norm && fcuda_linear_small_fits(tokens, in, out);
}

forge_status cuda_linear(forge_layer *layer, const lt_linear *plan, void *y, const void *x, const void *w,
                         const void *bias, int tokens, int in, int out, const char *fn) {
    cuda_ctx *cx = layer->ctx->impl;
    if (!cuda_small_gemm(layer, tokens, in, out)) return lt_linear_run(cx, plan, y, x, w, fn);
    CUDA_TRY(fn, fcuda_linear_small(x, w, bias, y, tokens, in, out, cx->stream));
    return FORGE_OK;
}
