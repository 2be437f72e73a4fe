/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_backend.c: the CUDA backend's operations (backend.h), each from the
 * file of its concern (cuda_backend.h lists them). */
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
    .cache_set_table = cuda_cache_set_table,
    .cache_copy_page = cuda_cache_copy_page,
    .cache_append = cuda_cache_append,
    .cache_read = cuda_cache_read,
    .cache_upload = cuda_cache_upload,
    .attention = cuda_attention,
    .paged_attention = cuda_paged_attention,
    .paged_split_size = cuda_paged_split_size,
    .reserve = cuda_reserve,
    .forward = cuda_forward,
    .timings = cuda_timings,
    .graph_capture = cuda_graph_capture,
    .graph_launch = cuda_graph_launch,
    .graph_free = cuda_graph_free,
};
