/* SPDX-License-Identifier: Apache-2.0 */
/* names.c: the names of backends and stages, for messages and reports; a
 * leaf that a backend module links a copy of. */
#include "forge.h"

const char *forge_backend_name(forge_backend backend) {
    switch (backend) {
    case FORGE_BACKEND_AUTO: return "auto";
    case FORGE_BACKEND_CPU: return "cpu";
    case FORGE_BACKEND_CUDA: return "cuda";
    }
    return "unknown";
}

const char *forge_stage_name(forge_stage stage) {
    switch (stage) {
    case FORGE_STAGE_QKV: return "qkv projection";
    case FORGE_STAGE_ROPE_CACHE: return "split/rope/cache";
    case FORGE_STAGE_ATTENTION: return "attention";
    case FORGE_STAGE_OUTPUT: return "output projection";
    case FORGE_STAGE_COUNT: break;
    }
    return "unknown";
}
