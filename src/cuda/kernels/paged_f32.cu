/* SPDX-License-Identifier: Apache-2.0 */
/* paged_f32.cu: attention over a float paged KV cache, on CUDA cores (the
 * 16-bit pools take paged_mma.cu's tensor-core kernel).
 *
 * A block takes one KV head of one sequence, up to ROWS (query, head) rows
 * of that head's group and one split of the sequence's tokens. It streams
 * the split's K and V through shared memory in tiles (cp.async, a ring of
 * STAGES tiles, each token's page looked up in the table). Each thread
 * owns 8 elements of the head dim and one token slot: a token's score is a
 * reduction over the lanes of its slot, and each slot keeps its own online
 * softmax, merged across the slots of a warp here and across warps by
 * paged_finish. */
#include "paged.cuh"

template <int D> struct paged_f32_cfg {
    static constexpr int ROWS = 4, STAGES = 4;
    static constexpr int ROW_BYTES = D * 4;
    static constexpr int CH = ROW_BYTES / 16;                                /* 16-byte chunks of a row */
    static constexpr int LPT = D <= 32 ? 4 : D <= 64 ? 8 : D <= 128 ? 16 : 32; /* lanes a token, 8 elements each */
    static constexpr int TPW = 32 / LPT;                                     /* token slots of a warp */
    static constexpr int SLOTS = TPW * PAGED_WARPS;                          /* of the block */
    /* tokens a stage: about 8 KB of K and 8 of V */
    static constexpr int TILE = 8192 / ROW_BYTES >= 64 ? 64 : 8192 / ROW_BYTES >= 32 ? 32 : 16;
    static constexpr int PER_SLOT = TILE / SLOTS;                            /* tokens a slot takes of a tile */
    static constexpr size_t ring_bytes = (size_t)STAGES * 2 * TILE * ROW_BYTES;
    static constexpr size_t finish_bytes = paged_finish_bytes<D, ROWS>;
    static constexpr size_t bytes = ring_bytes > finish_bytes ? ring_bytes : finish_bytes;
    static_assert(PER_SLOT >= 1 && TILE % SLOTS == 0, "a tile gives every token slot the same count");
};

template <int D>
__global__ void __launch_bounds__(PAGED_THREADS, 3) paged_f32_kernel(fcuda_pool p, fcuda_paged_args a,
                                                                    fcuda_paged_batch b) {
    using C = paged_f32_cfg<D>;
    constexpr int R = C::ROWS, TILE = C::TILE, STAGES = C::STAGES;
    extern __shared__ __align__(16) unsigned char smem[];
    float *Ks = (float *)smem;      /* [STAGES][TILE][D] */
    float *Vs = Ks + STAGES * TILE * D; /* [STAGES][TILE][D] */

    paged_block pb;
    if (!paged_block_init(pb, p, a, b, R)) return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int slot = warp * C::TPW + lane / C::LPT, e = lane % C::LPT; /* token slot, element chunk */
    const bool has = e * 8 < D; /* lanes past the head dim (D = 96) hold zeros */

    /* row r sees positions first[r] .. limit[r]; q is scaled into log2 units */
    const float sl = a.scale * 1.4426950408889634f;
    float q[R][8], o[R][8], m[R], l[R];
    int first[R], limit[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        limit[r] = r < pb.nrows ? paged_limit(pb, r) : -1;
        first[r] = r < pb.nrows ? paged_first(pb, r, a.window) : 0;
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; j++) q[r][j] = o[r][j] = 0.0f;
        if (r < pb.nrows && has) {
            load8((const float *)a.q + paged_row_at(pb, a, b, r) * D + e * 8, q[r]);
#pragma unroll
            for (int j = 0; j < 8; j++) q[r][j] *= sl;
        }
    }

    const size_t kv_pitch = (size_t)p.kv_heads * D; /* elements between a page's tokens */
    const float *kg = (const float *)p.k + (size_t)pb.g * D, *vg = (const float *)p.v + (size_t)pb.g * D;
    const int *table = p.table + (size_t)b.seq[pb.i] * p.max_pages;
    const int n_tiles = (pb.end - pb.begin + TILE - 1) / TILE;
    /* tile t's K and V rows into stage s; rows past the split load as zeros */
    auto load = [&](int t, int s) {
        const int t0 = pb.begin + t * TILE;
        float *ks = Ks + s * TILE * D, *vs = Vs + s * TILE * D;
        for (int c = threadIdx.x; c < TILE * C::CH; c += PAGED_THREADS) {
            const int row = c / C::CH, el = (c % C::CH) * 4, pos = t0 + row;
            const bool ok = pos < pb.end;
            size_t off = 0;
            if (ok) off = ((size_t)table[pos / p.page_size] * p.page_size + pos % p.page_size) * kv_pitch;
            cp_async_16(smem_addr(ks + row * D + el), kg + off + el, ok ? 16 : 0);
            cp_async_16(smem_addr(vs + row * D + el), vg + off + el, ok ? 16 : 0);
        }
    };
#pragma unroll
    for (int s = 0; s < STAGES - 1; s++) {
        if (s < n_tiles) load(s, s);
        cp_async_commit();
    }

    for (int t = 0; t < n_tiles; t++) {
        cp_async_wait<STAGES - 2>();
        __syncthreads(); /* tile t is in for every thread; tile t - 1's stage is free */
        if (t + STAGES - 1 < n_tiles) load(t + STAGES - 1, (t + STAGES - 1) % STAGES);
        cp_async_commit();
        const float *ks = Ks + (t % STAGES) * TILE * D, *vs = Vs + (t % STAGES) * TILE * D;
        const int t0 = pb.begin + t * TILE;

        /* the slot's scores: a dot product over the slot's lanes */
        float s[C::PER_SLOT][R];
#pragma unroll
        for (int u = 0; u < C::PER_SLOT; u++) {
            const int row = slot + u * C::SLOTS, pos = t0 + row;
            float k8[8] = {};
            if (has) load8(ks + row * D + e * 8, k8);
#pragma unroll
            for (int r = 0; r < R; r++) {
                if (r >= pb.nrows) continue;
                float dot = 0.0f;
#pragma unroll
                for (int j = 0; j < 8; j++) dot = fmaf(q[r][j], k8[j], dot);
#pragma unroll
                for (int off = C::LPT / 2; off > 0; off /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, off);
                s[u][r] = pos < pb.end && pos <= limit[r] && pos >= first[r] ? dot : -INFINITY;
            }
        }
        /* online softmax: new maxima, the rescale, then P V a token at a time */
        float base[R] = {};
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (r >= pb.nrows) continue;
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
                if (r >= pb.nrows) continue;
                const float pr = fast_exp2(s[u][r] - base[r]);
                l[r] += pr;
#pragma unroll
                for (int j = 0; j < 8; j++) o[r][j] = fmaf(pr, v8[j], o[r][j]);
            }
        }
    }

    /* merge the token slots of a warp (lanes LPT, 2 LPT, .. apart) */
#pragma unroll
    for (int off = C::LPT; off < 32; off *= 2)
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (r >= pb.nrows) continue;
            const float m2 = __shfl_xor_sync(0xffffffffu, m[r], off), l2 = __shfl_xor_sync(0xffffffffu, l[r], off);
            const float mx = fmaxf(m[r], m2), bs = mx == -INFINITY ? 0.0f : mx;
            const float c1 = fast_exp2(m[r] - bs), c2 = fast_exp2(m2 - bs);
            m[r] = mx, l[r] = l[r] * c1 + l2 * c2;
#pragma unroll
            for (int j = 0; j < 8; j++) o[r][j] = o[r][j] * c1 + __shfl_xor_sync(0xffffffffu, o[r][j], off) * c2;
        }
    /* the warp's state to smem, in paged_finish's layout */
    cp_async_wait<0>();
    __syncthreads(); /* the ring is free */
    float *wo = (float *)smem, *wm = wo + PAGED_WARPS * R * D, *wl = wm + PAGED_WARPS * R;
    if (lane < C::LPT)
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (r >= pb.nrows) continue;
            if (has)
#pragma unroll
                for (int j = 0; j < 8; j++) wo[(warp * R + r) * D + e * 8 + j] = o[r][j];
            if (lane == 0) wm[warp * R + r] = m[r], wl[warp * R + r] = l[r];
        }
    __syncthreads();
    paged_finish<float, D, R>((const float *)smem, pb, a, b);
}

template <int D> paged_kernel paged_f32_kernel_of(void) {
    return {(const void *)paged_f32_kernel<D>, paged_f32_cfg<D>::bytes, paged_f32_cfg<D>::ROWS};
}

#define INSTANTIATE(d) template paged_kernel paged_f32_kernel_of<d>(void);
PAGED_HEAD_DIMS(INSTANTIATE)
#undef INSTANTIATE
