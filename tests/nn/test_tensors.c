/* The public safetensors API (vktrain/tensors.h): fp32 round trips, F16/BF16/
 * F64 read as fp32, the errors a user meets (no such tensor, wrong count,
 * integer dtype, missing file), and a model's parameters saved and loaded by
 * state_dict name, with the missing or mis-shaped tensor named. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/safetensors.h"
#include "test_gpu.h"

static char dir[64];

static void at(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static void assert_error_has(const char *needle)
{
    if (!strstr(vkt_last_error(), needle))
        fail_msg("error \"%s\" does not mention \"%s\"", vkt_last_error(), needle);
}

static void test_f32_round_trip(void **state)
{
    (void)state;
    char p[128];
    at(p, sizeof p, "rt.safetensors");
    float w[6] = {1, -2, 3.5f, 0, 1e-20f, -7}, s = 42;
    vkt_tensor_f32 t[2] = {{.name = "w", .ndim = 2, .shape = {2, 3}, .data = w},
                           {.name = "scalar", .ndim = 0, .data = &s}};
    assert_vkt_ok(vkt_tensors_write_f32(p, t, 2));
    vkt_tensor_file *f = NULL;
    assert_vkt_ok(vkt_tensor_file_open(p, &f));
    assert_int_equal(vkt_tensor_file_count(f), 2);
    vkt_tensor_info ti;
    assert_vkt_ok(vkt_tensor_file_info(f, 0, &ti));
    assert_string_equal(ti.name, "w");
    assert_string_equal(ti.dtype, "F32");
    assert_int_equal(ti.ndim, 2);
    assert_int_equal(ti.shape[0], 2);
    assert_int_equal(ti.shape[1], 3);
    assert_int_equal(ti.numel, 6);
    assert_vkt_ok(vkt_tensor_file_find(f, "scalar", &ti));
    assert_int_equal(ti.ndim, 0);
    assert_int_equal(ti.numel, 1);
    float r[6];
    assert_vkt_ok(vkt_tensor_file_read_f32(f, "w", r, 6));
    assert_memory_equal(r, w, sizeof w);
    assert_vkt_ok(vkt_tensor_file_read_f32(f, "scalar", r, 1));
    assert_true(r[0] == 42);
    /* The errors: no such tensor, the wrong count, an index out of range. */
    assert_int_equal(vkt_tensor_file_find(f, "nope", &ti), VKT_ERR_INVALID_ARG);
    assert_error_has("'nope'");
    assert_int_equal(vkt_tensor_file_read_f32(f, "w", r, 5), VKT_ERR_INVALID_ARG);
    assert_error_has("6 elements");
    assert_int_equal(vkt_tensor_file_info(f, 2, &ti), VKT_ERR_INVALID_ARG);
    vkt_tensor_file_close(f);
    vkt_tensor_file_close(NULL);
    /* An empty file is valid; a duplicate name is refused. */
    assert_vkt_ok(vkt_tensors_write_f32(p, NULL, 0));
    assert_vkt_ok(vkt_tensor_file_open(p, &f));
    assert_int_equal(vkt_tensor_file_count(f), 0);
    vkt_tensor_file_close(f);
    t[1].name = "w";
    assert_int_equal(vkt_tensors_write_f32(p, t, 2), VKT_ERR_INVALID_ARG);
    at(p, sizeof p, "missing.safetensors");
    assert_int_equal(vkt_tensor_file_open(p, &f), VKT_ERR_IO);
    assert_null(f);
}

static void test_read_converts(void **state)
{
    (void)state;
    char p[128];
    at(p, sizeof p, "conv.safetensors");
    /* 1.5, -2, 65504 (fp16's largest), 2^-24 (its smallest subnormal) */
    const uint16_t f16[4] = {0x3e00, 0xc000, 0x7bff, 0x0001};
    const uint16_t bf16[3] = {0x3fc0, 0xc000, 0x4780}; /* 1.5, -2, 65536 */
    const double f64[2] = {1.0 / 3.0, -1e30};
    const int32_t i32[1] = {7};
    vkt_st_tensor t[4] = {{.name = "h", .dtype = VKT_ST_F16, .ndim = 1, .shape = {4}, .data = f16},
                          {.name = "b", .dtype = VKT_ST_BF16, .ndim = 1, .shape = {3}, .data = bf16},
                          {.name = "d", .dtype = VKT_ST_F64, .ndim = 1, .shape = {2}, .data = f64},
                          {.name = "i", .dtype = VKT_ST_I32, .ndim = 1, .shape = {1}, .data = i32}};
    assert_vkt_ok(vkt__st_write(p, t, 4, NULL, 0, NULL));
    vkt_tensor_file *f = NULL;
    assert_vkt_ok(vkt_tensor_file_open(p, &f));
    float r[4];
    assert_vkt_ok(vkt_tensor_file_read_f32(f, "h", r, 4));
    assert_true(r[0] == 1.5f && r[1] == -2.0f && r[2] == 65504.0f && r[3] == ldexpf(1, -24));
    assert_vkt_ok(vkt_tensor_file_read_f32(f, "b", r, 3));
    assert_true(r[0] == 1.5f && r[1] == -2.0f && r[2] == 65536.0f);
    assert_vkt_ok(vkt_tensor_file_read_f32(f, "d", r, 2));
    assert_true(r[0] == (float)(1.0 / 3.0) && r[1] == -1e30f);
    vkt_tensor_info ti;
    assert_vkt_ok(vkt_tensor_file_find(f, "h", &ti));
    assert_string_equal(ti.dtype, "F16");
    assert_int_equal(vkt_tensor_file_read_f32(f, "i", r, 1), VKT_ERR_INVALID_ARG);
    assert_error_has("I32");
    vkt_tensor_file_close(f);
}

/* An MLP 10 -> 8 -> 4: layers.0.weight [8, 10], layers.0.bias [8],
 * layers.1.weight [4, 8], layers.1.bias [4]. */
static vkt_model *mlp(vkt_device *dev, uint64_t seed)
{
    static const uint32_t sizes[] = {10, 8, 4};
    vkt_mlp_opts o = VKT_MLP_OPTS_INIT;
    o.layers = 2, o.sizes = sizes, o.seed = seed;
    vkt_model *m = NULL;
    assert_vkt_ok(vkt_model_create_mlp(dev, &o, &m));
    return m;
}

static void test_model_save_load(void **state)
{
    vkt_device *dev = *state;
    char p[128];
    at(p, sizeof p, "model.safetensors");
    vkt_model *a = mlp(dev, 1), *b = mlp(dev, 2);
    uint64_t n = vkt_model_num_params(a);
    assert_int_equal(n, 8 * 10 + 8 + 4 * 8 + 4);
    float *pa = malloc(n * sizeof *pa), *pb = malloc(n * sizeof *pb);
    assert_vkt_ok(vkt_model_save_safetensors(a, p));
    assert_vkt_ok(vkt_model_get_params(a, pa));
    assert_vkt_ok(vkt_model_get_params(b, pb));
    assert_true(memcmp(pa, pb, n * sizeof *pa) != 0); /* other seeds, other weights */

    /* The file holds every parameter by its state_dict name and shape. */
    vkt_tensor_file *f = NULL;
    assert_vkt_ok(vkt_tensor_file_open(p, &f));
    assert_int_equal(vkt_tensor_file_count(f), 4);
    vkt_tensor_info ti;
    assert_vkt_ok(vkt_tensor_file_find(f, "layers.1.weight", &ti));
    assert_true(ti.ndim == 2 && ti.shape[0] == 4 && ti.shape[1] == 8);
    float w1[32];
    assert_vkt_ok(vkt_tensor_file_read_f32(f, "layers.1.weight", w1, 32));
    assert_memory_equal(w1, pa + 88, sizeof w1); /* after layers.0.weight, layers.0.bias */
    vkt_tensor_file_close(f);

    assert_vkt_ok(vkt_model_load_safetensors(b, p));
    assert_vkt_ok(vkt_model_get_params(b, pb));
    assert_memory_equal(pa, pb, n * sizeof *pa);

    /* Missing and mis-shaped tensors are named; b is left as it was. */
    vkt_tensor_f32 t[3] = {{.name = "layers.0.weight", .ndim = 2, .shape = {8, 10}, .data = pa},
                           {.name = "layers.0.bias", .ndim = 1, .shape = {8}, .data = pa},
                           {.name = "layers.1.weight", .ndim = 2, .shape = {4, 8}, .data = pa}};
    assert_vkt_ok(vkt_tensors_write_f32(p, t, 3));
    assert_int_equal(vkt_model_load_safetensors(b, p), VKT_ERR_INVALID_ARG);
    assert_error_has("'layers.1.bias' is missing");
    t[2].shape[0] = 8, t[2].shape[1] = 4;
    assert_vkt_ok(vkt_tensors_write_f32(p, t, 3));
    assert_int_equal(vkt_model_load_safetensors(b, p), VKT_ERR_INVALID_ARG);
    assert_error_has("'layers.1.weight' has shape [8, 4]; the model's is [4, 8]");
    assert_vkt_ok(vkt_model_get_params(b, pb));
    assert_memory_equal(pa, pb, n * sizeof *pa);

    /* write_params of get_params is save. */
    assert_vkt_ok(vkt_model_write_params(a, pa, p));
    assert_vkt_ok(vkt_model_read_params(b, p, pb));
    assert_memory_equal(pa, pb, n * sizeof *pa);
    free(pa);
    free(pb);
    vkt_model_destroy(a);
    vkt_model_destroy(b);
}

static int setup(void **state)
{
    strcpy(dir, "/tmp/vkt-test-tensors.XXXXXX");
    if (!mkdtemp(dir)) return -1;
    return tgpu_group_setup(state);
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    int rc = system(cmd);
    return tgpu_group_teardown(state) || rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_round_trip),
        cmocka_unit_test(test_read_converts),
        cmocka_unit_test(test_model_save_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
