/* SPDX-License-Identifier: Apache-2.0 */
/* paged.cu: the paged KV cache's kernels. Appends scatter K and V rows into
 * their pages. Attention over the pages (decode: one query a sequence;
 * chunked prefill: several) runs in two kernels: the attention kernel
 * proper (paged_mma.cu for 16-bit pools, paged_f32.cu for float), whose
 * blocks each read one split of a sequence's tokens for one KV head, and,
 * when a sequence has several splits, paged_merge_kernel here, which
 * combines their partial results by log-sum-exp. */
#include "paged.cuh"

extern "C" int fcuda_paged_supported(int head_dim) {
#define SUPPORTED(d) if (head_dim == d) return 1;
    PAGED_HEAD_DIMS(SUPPORTED)
#undef SUPPORTED
    return 0;
}

static __host__ __device__ inline int dtype_bytes(forge_dtype dtype) { return dtype == FORGE_F32 ? 4 : 2; }

/* ------------------------------------------------------------- append */

__global__ void paged_write_kernel(fcuda_pool p, fcuda_paged_batch b, const uint4 *k, const uint4 *v) {
    const int i = blockIdx.y, chunks = p.kv_heads * p.head_dim * dtype_bytes(p.dtype) / 16; /* a token's row */
    const long c = (long)blockIdx.x * blockDim.x + threadIdx.x;
    const int t = (int)(c / chunks), col = (int)(c % chunks);
    if (t >= b.count[i]) return;
    const int pos = b.pos0[i] + t;
    const int page = p.table[(size_t)b.seq[i] * p.max_pages + pos / p.page_size];
    const size_t dst = ((size_t)page * p.page_size + pos % p.page_size) * chunks + col;
    const size_t src = (size_t)(b.row0[i] + t) * chunks + col;
    ((uint4 *)p.k)[dst] = k[src];
    ((uint4 *)p.v)[dst] = v[src];
}

extern "C" cudaError_t fcuda_paged_write(const fcuda_pool *p, const fcuda_paged_batch *b, const void *k, const void *v,
                                         cudaStream_t stream) {
    const long chunks = (long)p->kv_heads * p->head_dim * dtype_bytes(p->dtype) / 16;
    const dim3 grid((unsigned)((b->max_count * chunks + 255) / 256), b->n);
    if (b->max_count > 0) paged_write_kernel<<<grid, 256, 0, stream>>>(*p, *b, (const uint4 *)k, (const uint4 *)v);
    return cudaGetLastError();
}

/* ---------------------------------------------------------- attention */

/* The attention kernel for a pool's dtype and head dim. */
static paged_kernel kernel_of(forge_dtype dtype, int head_dim) {
    switch (head_dim) {
#define CASE(d)                                                                   \
    case d:                                                                       \
        return dtype == FORGE_BF16 ? paged_mma_kernel_of<__nv_bfloat16, d>()      \
               : dtype == FORGE_F16 ? paged_mma_kernel_of<__half, d>()            \
                                    : paged_f32_kernel_of<d>();
        PAGED_HEAD_DIMS(CASE)
#undef CASE
    default: return {};
    }
}

extern "C" cudaError_t fcuda_paged_init(void) {
    static const forge_dtype dtypes[] = {FORGE_BF16, FORGE_F16, FORGE_F32};
    cudaError_t e = cudaSuccess;
    for (int t = 0; t < 3; t++) {
#define OPT_IN(d)                                                                                                 \
        if (e == cudaSuccess) {                                                                                   \
            const paged_kernel k = kernel_of(dtypes[t], d);                                                       \
            e = cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)k.smem);             \
        }
        PAGED_HEAD_DIMS(OPT_IN)
#undef OPT_IN
    }
    return e;
}

extern "C" int fcuda_paged_rows(forge_dtype dtype, int head_dim) { return kernel_of(dtype, head_dim).rows; }

extern "C" cudaError_t fcuda_paged_blocks_per_sm(forge_dtype dtype, int head_dim, int *blocks) {
    const paged_kernel k = kernel_of(dtype, head_dim);
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, k.fn, PAGED_THREADS, k.smem);
}

/* Combines a row's partial results, weights exp(lse_s - max). One block a
 * (query, head) row: thread t takes 4 consecutive elements (chunk t % C of
 * the row's C = head_dim / 4) of every G-th split from t / C, and the G
 * sums meet in shared memory in a fixed order, so the bits depend on the
 * split count alone, not on the batch. A row with one split copies it, bit
 * for bit as a launch without splits would have written it. */
constexpr int MERGE_THREADS = 128;
template <typename T> __global__ void __launch_bounds__(MERGE_THREADS) paged_merge_kernel(fcuda_paged_args a,
                                                                                        fcuda_paged_batch b, int D) {
    __shared__ float4 acc_s[MERGE_THREADS];
    __shared__ float sum_s[MERGE_THREADS], red[MERGE_THREADS / 32];
    const int i = blockIdx.y, row = blockIdx.x, t = threadIdx.x, lane = t % 32, warp = t / 32;
    pdl_wait(); /* the attention kernel's results */
    pdl_trigger();
    if (row >= (b.row0[i + 1] - b.row0[i]) * a.heads) return;
    const size_t at = (size_t)b.row0[i] * a.heads + row;
    /* the sequence's splits; never more than the launch's, by the host's choice */
    const int len = paged_len(b, i), span = len - forge_window_start(len, b.row0[i + 1] - b.row0[i], a.window);
    const int n = min((span + a.split_size - 1) / a.split_size, a.splits);
    const float *lse = a.part_lse + at * a.splits, *part = a.part + at * a.splits * D;

    float mx = -INFINITY; /* the block's maximum of lse */
    for (int s = t; s < n; s += MERGE_THREADS) mx = fmaxf(mx, lse[s]);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    mx = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
    const float base = mx == -INFINITY ? 0.0f : mx; /* a row that saw no key: all weights 0 */

    const int C = D / 4, G = MERGE_THREADS / C, c = t % C, g = t / C;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    float sum = 0.0f;
    if (g < G)
#pragma unroll 4
        for (int s = g; s < n; s += G) {
            const float w = n == 1 ? 1.0f : __expf(lse[s] - base);
            const float4 x = *(const float4 *)(part + (size_t)s * D + 4 * c);
            sum += w;
            acc.x += w * x.x, acc.y += w * x.y, acc.z += w * x.z, acc.w += w * x.w;
        }
    acc_s[t] = acc;
    if (c == 0 && g < G) sum_s[g] = sum; /* the same for every chunk of group g */
    __syncthreads();
    if (g != 0) return;
    float total = sum;
    for (int k = 1; k < G; k++) {
        const float4 y = acc_s[k * C + c];
        acc.x += y.x, acc.y += y.y, acc.z += y.z, acc.w += y.w;
        total += sum_s[k];
    }
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    T *out = (T *)a.out + at * D + 4 * c;
    if constexpr (sizeof(T) == 4)
        *(float4 *)out = make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv);
    else
        *(uint2 *)out = make_uint2(pack2<T>(acc.x * inv, acc.y * inv), pack2<T>(acc.z * inv, acc.w * inv));
    if (a.lse && c == 0)
        a.lse[(size_t)(at % a.heads) * a.total_q + at / a.heads] = n == 1 || mx == -INFINITY ? mx : mx + logf(total);
}

template <typename T>
static cudaError_t launch(const fcuda_pool *p, const fcuda_paged_args *a, const fcuda_paged_batch *b, cudaStream_t stream) {
    const paged_kernel k = kernel_of(p->dtype, p->head_dim);
    if (!k.fn) return cudaErrorInvalidValue;
    const int group = a->heads / p->kv_heads, row_tiles = (b->max_rows * group + k.rows - 1) / k.rows;
    void *args[] = {(void *)p, (void *)a, (void *)b};
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg =
        pdl_config(dim3(a->splits, p->kv_heads * row_tiles, b->n), dim3(PAGED_THREADS), k.smem, stream, &attr);
    cudaError_t e = cudaLaunchKernelExC(&cfg, k.fn, args);
    if (e == cudaSuccess && a->splits > 1)
        e = pdl_launch(paged_merge_kernel<T>, dim3(b->max_rows * a->heads, b->n), dim3(MERGE_THREADS), 0, stream, *a, *b,
                       p->head_dim);
    return e ? e : cudaGetLastError();
}

extern "C" cudaError_t fcuda_paged_attention(const fcuda_pool *p, const fcuda_paged_args *a, const fcuda_paged_batch *b,
                                             cudaStream_t stream) {
    if (b->max_rows == 0) return cudaSuccess;
    switch (p->dtype) {
    case FORGE_BF16: return launch<__nv_bfloat16>(p, a, b, stream);
    case FORGE_F16: return launch<__half>(p, a, b, stream);
    default: return launch<float>(p, a, b, stream);
    }
}
