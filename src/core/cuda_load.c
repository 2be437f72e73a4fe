/* SPDX-License-Identifier: Apache-2.0 */
/* cuda_load.c: finds and loads the CUDA backend's module,
 * libforge-llm-cuda.so, once per process: FORGE_CUDA_MODULE if set, else
 * beside the library (or program) this code is in, else wherever the
 * dynamic loader looks. Where it cannot be loaded (no module, its CUDA
 * libraries missing, another build's), the CUDA backend is unavailable and
 * says why; the CPU backend is unaffected. */
#define _GNU_SOURCE /* dladdr */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "error.h"

#define MODULE_FILE "libforge-llm-cuda.so"

#ifdef FORGE_HAVE_CUDA

static const forge_module *module;
static char why_not[512];

/* dlopen of the path, or why not appended to why_not. */
static void *open_at(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const size_t n = strlen(why_not);
        snprintf(why_not + n, sizeof why_not - n, "%s%s", n ? "; " : "", dlerror());
    }
    return h;
}

static void load(void) {
    static const forge_module_host host = {FORGE_BUILD_ID, forge_vfail};
    void *h = NULL;
    const char *env = getenv("FORGE_CUDA_MODULE");
    if (env && *env) {
        h = open_at(env);
    } else {
        Dl_info self;
        char path[4096];
        const char *slash;
        if (dladdr((void *)load, &self) && self.dli_fname && (slash = strrchr(self.dli_fname, '/')) &&
            snprintf(path, sizeof path, "%.*s/" MODULE_FILE, (int)(slash - self.dli_fname), self.dli_fname) <
                (int)sizeof path)
            h = open_at(path);
        if (!h) h = open_at(MODULE_FILE);
    }
    if (!h) return;
    forge_module_entry entry = (forge_module_entry)(uintptr_t)dlsym(h, FORGE_CUDA_MODULE_ENTRY);
    module = entry ? entry(&host) : NULL;
    if (!module) {
        snprintf(why_not, sizeof why_not, "%s is of another build of Forge", MODULE_FILE);
        dlclose(h);
    }
}

forge_status forge_cuda_module_get(const char *fn, const forge_module **out) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, load);
    if (!module) return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: cannot load the CUDA backend (%s)", fn, why_not);
    *out = module;
    return FORGE_OK;
}

#else

forge_status forge_cuda_module_get(const char *fn, const forge_module **out) {
    (void)out;
    return forge_fail(FORGE_ERR_UNSUPPORTED, "%s: this build of Forge has no CUDA backend", fn);
}

#endif
