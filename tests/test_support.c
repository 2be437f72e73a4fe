/* SPDX-License-Identifier: Apache-2.0 */
/* test_support.c: the support table (forge.h's forge_support_row) against
 * the CUDA kernels' own lists of head dims, at every head dim from 1 to 256,
 * so that the table, the messages made from it and the README cannot drift
 * from what is built. Host code only: it needs no GPU. */
#include <stdio.h>

#include "cuda/kernels/kernels.h"
#include "support.h"
#include "test_util.h"

static void expect_same(forge_support_id id, int (*built)(int), const char *what) {
    for (int d = 1; d <= 256; d++)
        if (forge_support_has(id, d) != (built(d) != 0))
            fail_msg("head dim %d: the support table says %d, %s says %d", d, forge_support_has(id, d), what, built(d));
}

static int any_dim(int d) { return d >= 1 && d <= 256; }

static void test_head_dims(void **state) {
    expect_same(SUPPORT_MMA, fcuda_flash_mma_supported, "fcuda_flash_mma_supported");
#ifdef FORGE_HAVE_SM90A
    expect_same(SUPPORT_WGMMA, fcuda_flash_wgmma_supported, "fcuda_flash_wgmma_supported");
#endif
    expect_same(SUPPORT_FLASH_F32, fcuda_flash_f32_supported, "fcuda_flash_f32_supported");
    expect_same(SUPPORT_PAGED_MMA, fcuda_paged_supported, "fcuda_paged_supported");
    expect_same(SUPPORT_PAGED_F32, fcuda_paged_supported, "fcuda_paged_supported");
    expect_same(SUPPORT_UNFUSED, any_dim, "the unfused path");
    expect_same(SUPPORT_CPU, any_dim, "the CPU backend");
}

/* Every row is reachable through the public API, and complete. */
static void test_rows(void **state) {
    assert_int_equal(forge_support_count(), SUPPORT_ROWS);
    for (int i = 0; i < SUPPORT_ROWS; i++) {
        const forge_support *r = forge_support_row(i);
        assert_ptr_equal(r, forge_support_of((forge_support_id)i));
        assert_true(r->operation && r->kernel && r->dtypes && r->n_head_dims >= 0 && r->n_head_dims <= 8);
    }
    assert_null(forge_support_row(SUPPORT_ROWS));
    assert_null(forge_support_row(-1));
    char dims[64];
    assert_string_equal(forge_support_dims(SUPPORT_MMA, dims, sizeof dims), "32, 64, 96, 128 and 256");
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_head_dims), cmocka_unit_test(test_rows)};
    return cmocka_run_group_tests_name("support", tests, NULL, NULL);
}
