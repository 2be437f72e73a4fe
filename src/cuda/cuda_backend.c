/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_backend.c: the CUDA backend's operations (backend.h), each from the
 * file of its concern: cuda_context.c (device, stream, buffers),
 * cuda_weights.c (a layer's weights), cuda_cache.c (the contiguous cache),
 * cuda_forward.c and layer16.c (the forward calls), cuda_attention.c
 * (attention alone), cuda_paged.c and layer_paged.c (the paged cache and
 * the layer over it), cuda_graph.c (graphs). */
#include "cuda_backend.h"

const forge_backend_ops forge_cuda_backend = {
    .kind = FORGE_BACKEND_CUDA,
    .context_init = cuda_context_init,
    .context_free = cuda_context_free,
    .set_stream = cuda_set_stream,
    .synchronize = cuda_synchronize,
    .stopwatch_start = cuda_stopwatch_start,
    .stopwatch_stop = cuda_stopwatch_stop,
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_free = cuda_buffer_free,
    .buffer_copy = cuda_buffer_copy,
    .layer_init = cuda_layer_init,
    .layer_free = cuda_layer_free,
    .cache_init = cuda_cache_init,
    .cache_free = cuda_cache_free,
    .cache_read = cuda_cache_read,
    .cache_write = cuda_cache_write,
    .reserve = cuda_reserve,
    .forward = cuda_forward,
    .timings = cuda_timings,
    .attention = cuda_attention,
    .paged_init = cuda_paged_init,
    .paged_free = cuda_paged_free,
    .paged_set_table = cuda_paged_set_table,
    .paged_copy_page = cuda_paged_copy_page,
    .paged_write = cuda_paged_write,
    .paged_read = cuda_paged_read,
    .paged_attention = cuda_paged_attention,
    .paged_split_size = cuda_paged_split_size,
    .reserve_paged = cuda_reserve_paged,
    .forward_paged = cuda_forward_paged,
    .graph_capture = cuda_graph_capture,
    .graph_launch = cuda_graph_launch,
    .graph_free = cuda_graph_free,
};
