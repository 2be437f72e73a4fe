/* paged.cu: the paged KV cache's kernels. Appends scatter K and V rows into
 * their pages; attention over the pages serves decode (one query a
 * sequence) and chunked prefill (several), on CUDA cores, as a read of K
 * and V at the memory's pace:
 *
 * A block takes one KV head of one sequence, up to FCUDA_PAGED_ROWS
 * (query, head) rows of that head's group (so GQA reads each KV head once
 * for its whole group) and one split of the sequence's tokens. It streams
 * the split's K and V through shared memory in tiles (cp.async, a ring of
 * PAGED_STAGES tiles, each token's page looked up in the table). Each
 * thread owns 8 elements of the head dim and one token slot: a token's
 * score is a reduction over the lanes of its slot, and each slot keeps its
 * own online softmax, merged across slots and warps at the end. With one
 * split the block writes the output; with several it writes a normalised
 * partial output and its log-sum-exp, and paged_merge_kernel combines them. */
#include <math.h>

#include "forge.h"
#include "kernels.h"
#include "mma.cuh"

#define PAGED_HEAD_DIMS(X) X(32) X(64) X(96) X(128) X(256)

constexpr int PAGED_WARPS = 4, PAGED_THREADS = 32 * PAGED_WARPS, PAGED_STAGES = 4;

extern "C" int fcuda_paged_supported(int head_dim) {
#define SUPPORTED(d) if (head_dim == d) return 1;
    PAGED_HEAD_DIMS(SUPPORTED)
#undef SUPPORTED
    return 0;
}

static __host__ __device__ inline int dtype_bytes(int dtype) { return dtype == FORGE_F32 ? 4 : 2; }

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

/* 8 consecutive elements as floats (16 bytes of a 16-bit type, 32 of float). */
__device__ inline void load8(const __nv_bfloat16 *p, float (&x)[8]) {
    const uint4 u = *(const uint4 *)p;
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&u;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 f = __bfloat1622float2(h[j]);
        x[2 * j] = f.x, x[2 * j + 1] = f.y;
    }
}
__device__ inline void load8(const __half *p, float (&x)[8]) {
    const uint4 u = *(const uint4 *)p;
    const __half2 *h = (const __half2 *)&u;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const float2 f = __half22float2(h[j]);
        x[2 * j] = f.x, x[2 * j + 1] = f.y;
    }
}
__device__ inline void load8(const float *p, float (&x)[8]) {
    const float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
}

/* x * s, rounded to T, to 8 consecutive elements. */
template <typename T> __device__ inline void store8(T *p, const float (&x)[8], float s) {
    uint4 u;
    u.x = pack2<T>(x[0] * s, x[1] * s), u.y = pack2<T>(x[2] * s, x[3] * s);
    u.z = pack2<T>(x[4] * s, x[5] * s), u.w = pack2<T>(x[6] * s, x[7] * s);
    *(uint4 *)p = u;
}
template <> __device__ inline void store8<float>(float *p, const float (&x)[8], float s) {
    ((float4 *)p)[0] = make_float4(x[0] * s, x[1] * s, x[2] * s, x[3] * s);
    ((float4 *)p)[1] = make_float4(x[4] * s, x[5] * s, x[6] * s, x[7] * s);
}

template <typename T, int D> struct paged_cfg {
    static constexpr int ROW_BYTES = D * (int)sizeof(T);
    static constexpr int CH = ROW_BYTES / 16;                                /* 16-byte chunks of a row */
    static constexpr int LPT = D <= 32 ? 4 : D <= 64 ? 8 : D <= 128 ? 16 : 32; /* lanes a token, 8 elements each */
    static constexpr int TPW = 32 / LPT;                                     /* token slots of a warp */
    static constexpr int SLOTS = TPW * PAGED_WARPS;                          /* of the block */
    /* tokens a stage: about 8 KB of K and 8 of V */
    static constexpr int TILE = 8192 / ROW_BYTES >= 64 ? 64 : 8192 / ROW_BYTES >= 32 ? 32 : 16;
    static constexpr int PER_SLOT = TILE / SLOTS;                            /* tokens a slot takes of a tile */
    static constexpr size_t ring_bytes = (size_t)PAGED_STAGES * 2 * TILE * ROW_BYTES;
    /* the warps' softmax states, merged at the end: o [R][D], m [R], l [R] each */
    static constexpr size_t merge_bytes = (size_t)PAGED_WARPS * FCUDA_PAGED_ROWS * (D + 2) * sizeof(float);
    static constexpr size_t bytes = ring_bytes > merge_bytes ? ring_bytes : merge_bytes;
    static_assert(PER_SLOT >= 1 && TILE % SLOTS == 0, "a tile gives every token slot the same count");
};

template <typename T, int D>
__global__ void __launch_bounds__(PAGED_THREADS, 3) paged_attention_kernel(fcuda_pool p, fcuda_paged_args a,
                                                                      fcuda_paged_batch b) {
    using C = paged_cfg<T, D>;
    constexpr int R = FCUDA_PAGED_ROWS, TILE = C::TILE;
    extern __shared__ __align__(16) unsigned char smem[];
    T *Ks = (T *)smem;                    /* [STAGES][TILE][D] */
    T *Vs = Ks + PAGED_STAGES * TILE * D; /* [STAGES][TILE][D] */

    const int i = blockIdx.z, split = blockIdx.x, Hk = p.kv_heads, group = a.heads / Hk;
    const int g = blockIdx.y % Hk, r0 = (blockIdx.y / Hk) * R;
    const int len = b.count[i], nq = b.row0[i + 1] - b.row0[i], rows = nq * group;
    const int begin = split * a.split_size, end = min(len, begin + a.split_size);
    if (r0 >= rows || begin >= len) return;
    const int nrows = min(R, rows - r0);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int slot = warp * C::TPW + lane / C::LPT, e = lane % C::LPT; /* token slot, element chunk */
    const bool has = e * 8 < D; /* lanes past the head dim (D = 96) hold zeros */

    /* row r: query qi of the sequence, head h; it sees positions <= limit[r] */
    const float sl = a.scale * 1.4426950408889634f; /* scores in log2 units */
    float q[R][8], o[R][8], m[R], l[R];
    int limit[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int qi = (r0 + r) / group, h = g * group + (r0 + r) % group;
        limit[r] = r < nrows ? len - nq + qi : -1;
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) q[r][j] = o[r][j] = 0.0f;
        if (r < nrows && has) {
            load8((const T *)a.q + ((size_t)(b.row0[i] + qi) * a.heads + h) * D + e * 8, q[r]);
#pragma unroll
            for (int j = 0; j < 8; j++) q[r][j] *= sl;
        }
    }

    const size_t kv_pitch = (size_t)Hk * D; /* elements between a page's tokens */
    const T *kg = (const T *)p.k + (size_t)g * D, *vg = (const T *)p.v + (size_t)g * D;
    const int *table = p.table + (size_t)b.seq[i] * p.max_pages;
    const int n_tiles = (end - begin + TILE - 1) / TILE;
    /* tile t's K and V rows into stage s; rows past the split load as zeros */
    auto load = [&](int t, int s) {
        const int t0 = begin + t * TILE;
        T *ks = Ks + s * TILE * D, *vs = Vs + s * TILE * D;
        for (int c = threadIdx.x; c < TILE * C::CH; c += PAGED_THREADS) {
            const int row = c / C::CH, el = (c % C::CH) * (16 / (int)sizeof(T)), pos = t0 + row;
            const bool ok = pos < end;
            size_t off = 0;
            if (ok) off = ((size_t)table[pos / p.page_size] * p.page_size + pos % p.page_size) * kv_pitch;
            cp_async_16(smem_addr(ks + row * D + el), kg + off + el, ok ? 16 : 0);
            cp_async_16(smem_addr(vs + row * D + el), vg + off + el, ok ? 16 : 0);
        }
    };
#pragma unroll
    for (int s = 0; s < PAGED_STAGES - 1; s++) {
        if (s < n_tiles) load(s, s);
        cp_async_commit();
    }

    for (int t = 0; t < n_tiles; t++) {
        cp_async_wait<PAGED_STAGES - 2>();
        __syncthreads(); /* tile t is in for every thread; tile t - 1's stage is free */
        if (t + PAGED_STAGES - 1 < n_tiles) load(t + PAGED_STAGES - 1, (t + PAGED_STAGES - 1) % PAGED_STAGES);
        cp_async_commit();
        const T *ks = Ks + (t % PAGED_STAGES) * TILE * D, *vs = Vs + (t % PAGED_STAGES) * TILE * D;
        const int t0 = begin + t * TILE;

        /* the slot's scores: a dot product over the slot's lanes */
        float s[C::PER_SLOT][R];
#pragma unroll
        for (int u = 0; u < C::PER_SLOT; u++) {
            const int row = slot + u * C::SLOTS, pos = t0 + row;
            float k8[8] = {};
            if (has) load8(ks + row * D + e * 8, k8);
#pragma unroll
            for (int r = 0; r < R; r++) {
                if (r >= nrows) continue;
                float dot = 0.0f;
#pragma unroll
                for (int j = 0; j < 8; j++) dot = fmaf(q[r][j], k8[j], dot);
#pragma unroll
                for (int off = C::LPT / 2; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
                s[u][r] = pos < end && pos <= limit[r] ? dot : -INFINITY;
            }
        }
        /* online softmax: new maxima, the rescale, then P V a token at a time */
        float base[R] = {};
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (r >= nrows) continue;
            float mx = m[r];
#pragma unroll
            for (int u = 0; u < C::PER_SLOT; u++) mx = fmaxf(mx, s[u][r]);
            base[r] = mx == -INFINITY ? 0.0f : mx; /* no key seen yet: p and corr are 0 */
            const float corr = fast_exp2(m[r] - base[r]);
            m[r] = mx, l[r] *= corr;
#pragma unroll
            for (int j = 0; j < 8; j++) o[r][j] *= corr;
        }
#pragma unroll
        for (int u = 0; u < C::PER_SLOT; u++) {
            float v8[8] = {};
            if (has) load8(vs + (slot + u * C::SLOTS) * D + e * 8, v8);
#pragma unroll
            for (int r = 0; r < R; r++) {
                if (r >= nrows) continue;
                const float pr = fast_exp2(s[u][r] - base[r]);
                l[r] += pr;
#pragma unroll
                for (int j = 0; j < 8; j++) o[r][j] = fmaf(pr, v8[j], o[r][j]);
            }
        }
    }

    /* merge the token slots of a warp (lanes LPT, 2 LPT, .. apart), then the warps */
#pragma unroll
    for (int off = C::LPT; off < 32; off *= 2)
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (r >= nrows) continue;
            const float m2 = __shfl_xor_sync(0xffffffffu, m[r], off), l2 = __shfl_xor_sync(0xffffffffu, l[r], off);
            const float mx = fmaxf(m[r], m2), bs = mx == -INFINITY ? 0.0f : mx;
            const float c1 = fast_exp2(m[r] - bs), c2 = fast_exp2(m2 - bs);
            m[r] = mx, l[r] = l[r] * c1 + l2 * c2;
#pragma unroll
            for (int j = 0; j < 8; j++) o[r][j] = o[r][j] * c1 + __shfl_xor_sync(0xffffffffu, o[r][j], off) * c2;
        }
    cp_async_wait<0>();
    __syncthreads(); /* the ring is free: it holds the warps' states now */
    float *wo = (float *)smem;                            /* [WARPS][R][D] */
    float *wm = wo + PAGED_WARPS * R * D, *wl = wm + PAGED_WARPS * R; /* [WARPS][R] */
    if (lane < C::LPT)
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (r >= nrows) continue;
            if (has)
#pragma unroll
                for (int j = 0; j < 8; j++) wo[(warp * R + r) * D + e * 8 + j] = o[r][j];
            if (lane == 0) wm[warp * R + r] = m[r], wl[warp * R + r] = l[r];
        }
    __syncthreads();
    if (warp != 0 || !has) return;
    for (int r = lane / C::LPT; r < nrows; r += C::TPW) {
        float mx = -INFINITY;
#pragma unroll
        for (int w = 0; w < PAGED_WARPS; w++) mx = fmaxf(mx, wm[w * R + r]);
        const float bs = mx == -INFINITY ? 0.0f : mx;
        float sum = 0.0f, o8[8] = {};
#pragma unroll
        for (int w = 0; w < PAGED_WARPS; w++) {
            const float c = fast_exp2(wm[w * R + r] - bs);
            sum += wl[w * R + r] * c;
#pragma unroll
            for (int j = 0; j < 8; j++) o8[j] += wo[(w * R + r) * D + e * 8 + j] * c;
        }
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        const float lse = sum > 0.0f ? (mx + log2f(sum)) * 0.6931471805599453f : -INFINITY;
        const int qrow = b.row0[i] + (r0 + r) / group, h = g * group + (r0 + r) % group;
        const size_t at = (size_t)qrow * a.heads + h;
        if (a.splits == 1) {
            store8((T *)a.out + at * D + e * 8, o8, inv);
            if (a.lse && e == 0) a.lse[(size_t)h * a.total_q + qrow] = lse;
        } else {
            float *part = a.part + (at * a.splits + split) * (D + 1);
#pragma unroll
            for (int j = 0; j < 8; j++) part[e * 8 + j] = o8[j] * inv;
            if (e == 0) part[D] = lse;
        }
    }
}

/* Combines a row's partial results: weights exp(lse_s - max), in split
 * order. A row with one split copies it, bit for bit as a launch without
 * splits would have written it. One warp a (query, head) row. */
template <typename T>
__global__ void paged_merge_kernel(fcuda_paged_args a, fcuda_paged_batch b, int head_dim) {
    const int i = blockIdx.y, w = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    const int nq = b.row0[i + 1] - b.row0[i];
    if (w >= nq * a.heads) return;
    const int qrow = b.row0[i] + w / a.heads, h = w % a.heads, D = head_dim;
    const int n = (b.count[i] + a.split_size - 1) / a.split_size; /* the sequence's splits */
    const float *part = a.part + ((size_t)qrow * a.heads + h) * a.splits * (D + 1);
    float mx = -INFINITY;
    for (int s = 0; s < n; s++) mx = fmaxf(mx, part[s * (D + 1) + D]);
    float o8[8] = {}, sum = n == 1 ? 1.0f : 0.0f;
    if (n == 1) {
        if (lane * 8 < D)
            for (int j = 0; j < 8; j++) o8[j] = part[lane * 8 + j];
    } else {
        for (int s = 0; s < n; s++) {
            const float ls = part[s * (D + 1) + D], c = ls == -INFINITY ? 0.0f : __expf(ls - mx);
            sum += c;
            if (lane * 8 < D)
                for (int j = 0; j < 8; j++) o8[j] += c * part[s * (D + 1) + lane * 8 + j];
        }
    }
    if (lane * 8 < D) store8((T *)a.out + ((size_t)qrow * a.heads + h) * D + lane * 8, o8, sum > 0.0f ? 1.0f / sum : 0.0f);
    if (a.lse && lane == 0) a.lse[(size_t)h * a.total_q + qrow] = n == 1 ? mx : mx == -INFINITY ? -INFINITY : mx + logf(sum);
}

template <typename T, int D> static cudaError_t opt_in(void) {
    return cudaFuncSetAttribute(paged_attention_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)paged_cfg<T, D>::bytes);
}

extern "C" cudaError_t fcuda_paged_init(void) {
    cudaError_t e = cudaSuccess;
#define OPT_IN(d)                                                   \
    if (e == cudaSuccess) e = opt_in<__nv_bfloat16, d>();           \
    if (e == cudaSuccess) e = opt_in<__half, d>();                  \
    if (e == cudaSuccess) e = opt_in<float, d>();
    PAGED_HEAD_DIMS(OPT_IN)
#undef OPT_IN
    return e;
}

template <typename T, int D>
static cudaError_t launch(const fcuda_pool *p, const fcuda_paged_args *a, const fcuda_paged_batch *b, cudaStream_t stream) {
    const int group = a->heads / p->kv_heads, row_tiles = (b->max_rows * group + FCUDA_PAGED_ROWS - 1) / FCUDA_PAGED_ROWS;
    const dim3 grid(a->splits, p->kv_heads * row_tiles, b->n);
    paged_attention_kernel<T, D><<<grid, PAGED_THREADS, paged_cfg<T, D>::bytes, stream>>>(*p, *a, *b);
    if (a->splits > 1) {
        const dim3 merge_grid((b->max_rows * a->heads + 3) / 4, b->n);
        paged_merge_kernel<T><<<merge_grid, 128, 0, stream>>>(*a, *b, D);
    }
    return cudaGetLastError();
}

template <typename T>
static cudaError_t launch_dtype(const fcuda_pool *p, const fcuda_paged_args *a, const fcuda_paged_batch *b,
                                cudaStream_t stream) {
    switch (p->head_dim) {
#define LAUNCH(d) case d: return launch<T, d>(p, a, b, stream);
        PAGED_HEAD_DIMS(LAUNCH)
#undef LAUNCH
    default: return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t fcuda_paged_attention(const fcuda_pool *p, const fcuda_paged_args *a, const fcuda_paged_batch *b,
                                             cudaStream_t stream) {
    if (b->max_rows == 0) return cudaSuccess;
    switch (p->dtype) {
    case FORGE_BF16: return launch_dtype<__nv_bfloat16>(p, a, b, stream);
    case FORGE_F16: return launch_dtype<__half>(p, a, b, stream);
    default: return launch_dtype<float>(p, a, b, stream);
    }
}
