/* safetensors: round trips for every dtype, byte-exact agreement with the
 * reference implementation's own test vectors, and one test per corruption
 * class, each checked for VKT_ERR_CORRUPT and a message that names the file,
 * the tensor and the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmocka.h>

#include "formats/file.h"
#include "formats/safetensors.h"
#include "vktrain/alloc.h"

static char dir[64], path[128];

static int setup(void **state)
{
    strcpy(dir, "/tmp/vkt-test-st.XXXXXX");
    if (!mkdtemp(dir)) return -1;
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static void *slurp(const char *p, size_t *n)
{
    void *d = NULL;
    assert_int_equal(vkt__file_read(p, 1u << 30, &d, n), VKT_OK);
    return d;
}

static void spit(const char *p, const void *d, size_t n)
{
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(d, 1, n, f), n);
    fclose(f);
}

/* A file made by hand: the 8-byte length n_claimed, header, then data_len
 * bytes of data. */
static void write_raw(uint64_t n_claimed, const char *header, size_t data_len)
{
    size_t hl = strlen(header);
    uint8_t *b = calloc(1, 8 + hl + data_len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n_claimed >> (8 * i));
    memcpy(b + 8, header, hl);
    spit(path, b, 8 + hl + data_len);
    free(b);
}

static void write_hdr(const char *header, size_t data_len)
{
    write_raw(strlen(header), header, data_len);
}

/* open must fail with st and a message containing every needle. */
static void expect_fail(vkt_status st, const char *n1, const char *n2)
{
    vkt_st_file *f = (vkt_st_file *)1;
    assert_int_equal(vkt__st_open(path, &f), st);
    assert_null(f);
    const char *e = vkt_last_error();
    if (!strstr(e, "t.safetensors") || (n1 && !strstr(e, n1)) || (n2 && !strstr(e, n2)))
        fail_msg("message lacks '%s'/'%s': %s", n1 ? n1 : "", n2 ? n2 : "", e);
}

static void round_trip_every_dtype(void **state)
{
    enum { N = VKT_ST_DTYPE_COUNT_ + 2 };
    vkt_st_tensor t[N];
    char names[N][16];
    uint8_t *buf = malloc(N * 64);
    for (int i = 0; i < N * 64; i++) buf[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "t%02d.w", i);
        t[i] = (vkt_st_tensor){.name = names[i], .dtype = (vkt_st_dtype)(i % VKT_ST_DTYPE_COUNT_),
                               .ndim = 2, .shape = {2, 3}, .data = buf + i * 64};
    }
    t[N - 2].ndim = 0;         /* a scalar */
    t[N - 1].shape[0] = 0;     /* no elements */
    const vkt_st_meta meta[] = {{"format", "pt"}, {"note", "ünïcode \"quoted\""}};
    vkt_st_written w;
    assert_int_equal(vkt__st_write(path, t, N, meta, 2, &w), VKT_OK);
    size_t n = 0;
    uint8_t *file = slurp(path, &n);
    assert_int_equal(w.bytes, n);
    assert_true(w.xxh64 == XXH64(file, n, 0));
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)file[i] << (8 * i);
    assert_int_equal(hl % 8, 0); /* padded as the reference writer pads */
    vkt_free(file);

    vkt_st_file *f = NULL;
    assert_int_equal(vkt__st_open(path, &f), VKT_OK);
    assert_int_equal(vkt__st_count(f), N);
    assert_string_equal(vkt__st_meta(f, "format"), "pt");
    assert_string_equal(vkt__st_meta(f, "note"), "ünïcode \"quoted\"");
    assert_int_equal(vkt__st_meta_count(f), 2);
    for (int i = 0; i < N; i++) {
        const vkt_st_tensor *r = vkt__st_find(f, names[i]);
        assert_non_null(r);
        assert_int_equal(r->dtype, t[i].dtype);
        assert_int_equal(r->ndim, t[i].ndim);
        for (uint32_t d = 0; d < r->ndim; d++) assert_int_equal(r->shape[d], t[i].shape[d]);
        size_t bytes = vkt__st_numel(&t[i]) * vkt__st_dtype_size(t[i].dtype);
        assert_int_equal(r->nbytes, bytes);
        if (bytes) assert_memory_equal(r->data, t[i].data, bytes);
        /* Larger elements first: every tensor is aligned in the mapping. */
        assert_int_equal((uintptr_t)r->data % vkt__st_dtype_size(r->dtype), 0);
    }
    assert_null(vkt__st_find(f, "nope"));
    vkt__st_close(f);
    free(buf);
}

/* The bytes the reference implementation's own tests expect from its
 * serializer (safetensors/src/tensor.rs: test_empty, test_serialization,
 * test_serialization_forced_alignement): ours must be identical. */
static void matches_reference_bytes(void **state)
{
    size_t n;
    uint8_t *b;
    assert_int_equal(vkt__st_write(path, NULL, 0, NULL, 0, NULL), VKT_OK);
    b = slurp(path, &n);
    assert_int_equal(n, 16);
    assert_memory_equal(b, "\x08\0\0\0\0\0\0\0{}      ", 16);
    vkt_free(b);

    const vkt_st_meta m = {"framework", "pt"};
    assert_int_equal(vkt__st_write(path, NULL, 0, &m, 1, NULL), VKT_OK);
    b = slurp(path, &n);
    assert_int_equal(n, 48);
    assert_memory_equal(b, "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ", 48);
    vkt_free(b);

    const float v[6] = {0, 1, 2, 3, 4, 5};
    vkt_st_tensor t = {.name = "attn.0", .dtype = VKT_ST_F32, .ndim = 3, .shape = {1, 2, 3},
                       .data = v};
    assert_int_equal(vkt__st_write(path, &t, 1, NULL, 0, NULL), VKT_OK);
    b = slurp(path, &n);
    const char *h = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    assert_int_equal(n, 8 + 64 + 24);
    assert_int_equal(b[0], 64);
    assert_memory_equal(b + 8, h, 64);
    assert_memory_equal(b + 72, v, 24);
    vkt_free(b);

    t = (vkt_st_tensor){.name = "attn0", .dtype = VKT_ST_F32, .ndim = 4, .shape = {1, 1, 2, 3},
                        .data = v};
    assert_int_equal(vkt__st_write(path, &t, 1, NULL, 0, NULL), VKT_OK);
    b = slurp(path, &n);
    h = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ";
    assert_int_equal(b[0], 72);
    assert_memory_equal(b + 8, h, 72);
    vkt_free(b);

    /* The reference's documentation example reads back. */
    static const char doc[] = "<\0\0\0\0\0\0\0{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],"
                              "\"data_offsets\":[0,16]}}";
    uint8_t file[8 + 60 + 16] = {0};
    memcpy(file, doc, 8 + 60);
    spit(path, file, sizeof file);
    vkt_st_file *f = NULL;
    assert_int_equal(vkt__st_open(path, &f), VKT_OK);
    assert_int_equal(vkt__st_find(f, "test")->dtype, VKT_ST_I32);
    vkt__st_close(f);
}

static void corrupt_length_and_size(void **state)
{
    spit(path, "\x08\0\0\0", 4);
    expect_fail(VKT_ERR_CORRUPT, "shorter than the 8-byte header length", NULL);
    write_raw(100000001, "{}", 0);
    expect_fail(VKT_ERR_CORRUPT, "header length 100000001", "more than");
    write_raw(9, "{}", 0); /* claims more than the file has */
    expect_fail(VKT_ERR_CORRUPT, "runs past the end", NULL);

    const float v[4] = {1, 2, 3, 4};
    vkt_st_tensor t = {.name = "w", .dtype = VKT_ST_F32, .ndim = 1, .shape = {4}, .data = v};
    assert_int_equal(vkt__st_write(path, &t, 1, NULL, 0, NULL), VKT_OK);
    size_t n;
    uint8_t *b = slurp(path, &n);
    spit(path, b, n - 3); /* truncated */
    expect_fail(VKT_ERR_CORRUPT, "tensor 'w'", "run past the 13-byte data section");
    b[0] -= 8; /* header length too short: JSON cut off */
    spit(path, b, n);
    expect_fail(VKT_ERR_CORRUPT, "not valid JSON", NULL);
    b[0] += 16; /* too long: the header eats the data */
    spit(path, b, n);
    expect_fail(VKT_ERR_CORRUPT, "not valid JSON", NULL);
    b[0] -= 8;
    b[8] = 'x'; /* a flipped byte at the header's start */
    spit(path, b, n);
    expect_fail(VKT_ERR_CORRUPT, "does not start with '{'", NULL);
    b[8] = '{';
    b[12] ^= 0x80; /* a flipped byte inside the header: broken UTF-8 */
    spit(path, b, n);
    expect_fail(VKT_ERR_CORRUPT, "not valid JSON", NULL);
    b[12] ^= 0x80;
    uint8_t *longer = malloc(n + 4);
    memcpy(longer, b, n);
    memset(longer + n, 0, 4);
    spit(path, longer, n + 4); /* bytes appended */
    expect_fail(VKT_ERR_CORRUPT, "data section is 20 bytes but the tensors cover 16", NULL);
    free(longer);
    vkt_free(b);
}

static void corrupt_entries(void **state)
{
    write_raw(16, "[1,2,3]         ", 0);
    expect_fail(VKT_ERR_CORRUPT, "does not start with '{'", NULL);
    write_hdr("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    expect_fail(VKT_ERR_CORRUPT, "tensor 'a'", "'F33' is not a safetensors dtype");
    write_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    expect_fail(VKT_ERR_CORRUPT, "tensor 'a'", "give 8 bytes but data_offsets [0, 4] span 4");
    write_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4);
    expect_fail(VKT_ERR_CORRUPT, "tensor 'a'", "shape entry 0");
    write_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4);
    expect_fail(VKT_ERR_CORRUPT, "tensor 'a'", "end before they begin");
    write_hdr("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
              0);
    expect_fail(VKT_ERR_CORRUPT, "tensor 'a'", "overflows");
    write_raw(0, "", 0);
    expect_fail(VKT_ERR_CORRUPT, "does not start with '{'", NULL);
    const char *meta = "{\"__metadata__\":{\"k\":1}}";
    write_hdr(meta, 0);
    expect_fail(VKT_ERR_CORRUPT, "__metadata__ entry 'k' is not a string", NULL);
    const char *dims =
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}";
    write_hdr(dims, 1);
    expect_fail(VKT_ERR_UNSUPPORTED, "tensor 'a' has 9 dimensions", NULL);
}

static void corrupt_offsets_and_names(void **state)
{
    const char *overlap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    write_hdr(overlap, 12);
    expect_fail(VKT_ERR_CORRUPT, "tensor 'b'", "overlap tensor 'a'");
    const char *gap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    write_hdr(gap, 12);
    expect_fail(VKT_ERR_CORRUPT, "tensor 'b'", "4 bytes of the data section before it");
    const char *past = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    write_hdr(past, 4);
    expect_fail(VKT_ERR_CORRUPT, "tensor 'a'", "run past the 4-byte data section");
    const char *dup = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}";
    write_hdr(dup, 8);
    expect_fail(VKT_ERR_CORRUPT, "names a tensor twice", "a");
    /* Out of order in the header is fine: the reference sorts by offset. */
    const char *order = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    write_hdr(order, 8);
    vkt_st_file *f = NULL;
    assert_int_equal(vkt__st_open(path, &f), VKT_OK);
    assert_string_equal(vkt__st_tensor(f, 0)->name, "b");
    assert_ptr_equal(vkt__st_find(f, "a")->data, (const uint8_t *)vkt__st_find(f, "b")->data - 4);
    vkt__st_close(f);
}

static void writer_refuses_bad_arguments(void **state)
{
    float v = 1;
    vkt_st_tensor t[2] = {{.name = "a", .dtype = VKT_ST_F32, .ndim = 1, .shape = {1}, .data = &v},
                          {.name = "a", .dtype = VKT_ST_F32, .ndim = 1, .shape = {1}, .data = &v}};
    assert_int_equal(vkt__st_write(path, t, 2, NULL, 0, NULL), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "'a' is given twice"));
    t[1].name = "__metadata__";
    assert_int_equal(vkt__st_write(path, t, 2, NULL, 0, NULL), VKT_ERR_INVALID_ARG);
    t[1].name = "b";
    t[1].data = NULL;
    assert_int_equal(vkt__st_write(path, t, 2, NULL, 0, NULL), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "'b' has no data"));
    t[1].data = &v;
    t[1].dtype = VKT_ST_DTYPE_COUNT_;
    assert_int_equal(vkt__st_write(path, t, 2, NULL, 0, NULL), VKT_ERR_INVALID_ARG);
    assert_int_equal(access(path, F_OK), -1); /* nothing written */
}

/* Allocation failures in open and write: NOMEM or success, nothing leaks
 * (the sanitizer build checks the leaks). */
static int fail_at, calls;
static void *fa_alloc(void *u, size_t n) { return ++calls == fail_at ? NULL : malloc(n); }
static void *fa_realloc(void *u, void *p, size_t n)
{
    return ++calls == fail_at ? NULL : realloc(p, n);
}
static void fa_free(void *u, void *p) { free(p); }

static void allocation_failures(void **state)
{
    const float v[3] = {1, 2, 3};
    vkt_st_tensor t[2] = {{.name = "a", .dtype = VKT_ST_F32, .ndim = 1, .shape = {3}, .data = v},
                          {.name = "b", .dtype = VKT_ST_F16, .ndim = 1, .shape = {2}, .data = v}};
    const vkt_st_meta m = {"k", "v"};
    vkt_allocator a = {fa_alloc, fa_realloc, fa_free, NULL};
    int saw_nomem = 0;
    for (fail_at = 1; fail_at < 20; fail_at++) {
        calls = 0;
        vkt_set_allocator(&a);
        vkt_status ws = vkt__st_write(path, t, 2, &m, 1, NULL);
        vkt_st_file *f = NULL;
        vkt_status rs = ws == VKT_OK ? vkt__st_open(path, &f) : VKT_ERR_NOMEM;
        vkt__st_close(f);
        vkt_set_allocator(NULL);
        assert_true(ws == VKT_OK || ws == VKT_ERR_NOMEM);
        assert_true(rs == VKT_OK || rs == VKT_ERR_NOMEM);
        saw_nomem += rs == VKT_ERR_NOMEM;
    }
    assert_true(saw_nomem > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip_every_dtype, setup, teardown),
        cmocka_unit_test_setup_teardown(matches_reference_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_length_and_size, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_offsets_and_names, setup, teardown),
        cmocka_unit_test_setup_teardown(writer_refuses_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(allocation_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
