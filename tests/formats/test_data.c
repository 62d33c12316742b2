/* Data sets and the distributed sampler (vktrain/data.h): IDX raw and gzip,
 * raw text and llm.c token files written here into a temporary directory,
 * every damaged-file class, and the sampler's sharding, order and seek.
 * With a directory argument (the Fashion-MNIST package's, registered only
 * when it is installed) it opens the real data set instead. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "vktrain/alloc.h"
#include "vktrain/data.h"

static char tmp[64];
static const char *fashion_dir;

/* ------------------------------------------------------------------------ */
/* Files                                                                     */

/* A path in the temporary directory; valid for the next 63 calls. */
static const char *path_of(const char *name)
{
    static char p[64][160];
    static int next;
    char *s = p[next++ % 64];
    snprintf(s, sizeof p[0], "%s/%s", tmp, name);
    return s;
}

static const char *write_file(const char *name, const void *data, size_t size)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
    return p;
}

static const char *write_gz(const char *name, const void *data, size_t size)
{
    const char *p = path_of(name);
    gzFile f = gzopen(p, "wb9");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, data, (unsigned)size), (int)size);
    assert_int_equal(gzclose(f), Z_OK);
    return p;
}

/* An IDX file: 00 00 type ndims, big-endian dims, then the elements. */
static size_t make_idx(uint8_t *buf, uint8_t type, int nd, const uint32_t *dims,
                       const uint8_t *elems, size_t n_elems)
{
    size_t at = 0;
    buf[at++] = 0;
    buf[at++] = 0;
    buf[at++] = type;
    buf[at++] = (uint8_t)nd;
    for (int i = 0; i < nd; i++)
        for (int s = 24; s >= 0; s -= 8) buf[at++] = (uint8_t)(dims[i] >> s);
    memcpy(buf + at, elems, n_elems);
    return at + n_elems;
}

/* llm.c's token file: 256 int32 header (magic, version, count), uint16s. */
static size_t make_bin(uint8_t *buf, int32_t magic, int32_t version, int32_t count,
                       const uint16_t *tok, size_t n)
{
    memset(buf, 0, 1024);
    int32_t h[3] = {magic, version, count};
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 4; b++) buf[4 * i + b] = (uint8_t)((uint32_t)h[i] >> (8 * b));
    for (size_t i = 0; i < n; i++) {
        buf[1024 + 2 * i] = (uint8_t)tok[i];
        buf[1024 + 2 * i + 1] = (uint8_t)(tok[i] >> 8);
    }
    return 1024 + 2 * n;
}

static void expect_error(vkt_status got, vkt_status want, const char *part)
{
    if (got != want || !strstr(vkt_last_error(), part))
        fail_msg("expected %s with \"%s\", got %s: %s", vkt_status_name(want), part,
                 vkt_status_name(got), vkt_last_error());
}

static int make_tmp(void **state)
{
    (void)state;
    strcpy(tmp, "/tmp/vkt-data-XXXXXX");
    return mkdtemp(tmp) ? 0 : -1;
}

static int remove_tmp(void **state)
{
    (void)state;
    DIR *d = opendir(tmp);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(path_of(e->d_name));
    closedir(d);
    return rmdir(tmp);
}

/* ------------------------------------------------------------------------ */
/* IDX                                                                       */

enum { NI = 5, ROWS = 3, COLS = 4 };
static uint8_t pixels[NI * ROWS * COLS];
static const uint8_t label_vals[NI] = {3, 0, 7, 2, 7};

static size_t images_idx(uint8_t *buf, uint32_t n)
{
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)(i * 37 + 11);
    uint32_t dims[3] = {n, ROWS, COLS};
    return make_idx(buf, 0x08, 3, dims, pixels, (size_t)n * ROWS * COLS);
}

static size_t labels_idx(uint8_t *buf, uint32_t n)
{
    uint32_t dims[1] = {n};
    return make_idx(buf, 0x08, 1, dims, label_vals, n);
}

static void check_idx(const char *images, const char *labels)
{
    vkt_dataset *d = NULL;
    vkt_status st = vkt_dataset_open_idx(images, labels, &d);
    if (st != VKT_OK) fail_msg("open %s: %s", images, vkt_last_error());
    vkt_dataset_info info;
    vkt_dataset_get_info(d, &info);
    assert_int_equal(info.kind, VKT_DATASET_CLASSES);
    assert_int_equal(info.samples, NI);
    assert_int_equal(info.features, ROWS * COLS);
    assert_int_equal(info.classes, 8);
    assert_null(vkt_dataset_tokens(d));
    uint64_t idx[3] = {4, 0, 2};
    float in[3 * ROWS * COLS];
    int32_t lab[3];
    assert_int_equal(vkt_dataset_fill(d, idx, 3, in, NULL, lab), VKT_OK);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(lab[k], label_vals[idx[k]]);
        for (int j = 0; j < ROWS * COLS; j++)
            assert_true(in[k * ROWS * COLS + j] ==
                        (float)pixels[idx[k] * ROWS * COLS + j] / 255.0f);
    }
    assert_true(in[0] >= 0.0f && in[0] <= 1.0f);
    /* Out of range and missing outputs. */
    uint64_t bad = NI;
    expect_error(vkt_dataset_fill(d, &bad, 1, in, NULL, lab), VKT_ERR_INVALID_ARG,
                 "index 5 (entry 0) is beyond the data set's 5 samples");
    expect_error(vkt_dataset_fill(d, idx, 1, NULL, NULL, lab), VKT_ERR_INVALID_ARG,
                 "inputs must not be NULL");
    vkt_dataset_close(d);
}

static void test_idx_raw_and_gzip(void **state)
{
    (void)state;
    uint8_t ib[256], lb[64];
    size_t in = images_idx(ib, NI), ln = labels_idx(lb, NI);
    const char *ri = write_file("img", ib, in), *rl = write_file("lab", lb, ln);
    const char *gi = write_gz("img.gz", ib, in), *gl = write_gz("lab.gz", lb, ln);
    check_idx(ri, rl);
    check_idx(gi, gl);
    check_idx(gi, rl); /* each file is detected on its own */
    /* The content decides, not the name: gzip data without .gz. */
    check_idx(write_gz("img-packed", ib, in), rl);
    vkt_dataset_close(NULL);
}

/* A gzip stream of several members (as `cat a.gz b.gz` makes) is one file. */
static void test_idx_gzip_members(void **state)
{
    (void)state;
    uint8_t ib[256], lb[64];
    size_t in = images_idx(ib, NI), ln = labels_idx(lb, NI);
    const char *a = write_gz("part-a.gz", ib, 10), *b = write_gz("part-b.gz", ib + 10, in - 10);
    uint8_t cat[1024];
    size_t n = 0;
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(i ? b : a, "rb");
        assert_non_null(f);
        n += fread(cat + n, 1, sizeof cat - n, f);
        fclose(f);
    }
    check_idx(write_file("img-2members.gz", cat, n), write_file("lab", lb, ln));
}

static void test_idx_damaged(void **state)
{
    (void)state;
    uint8_t ib[256], lb[64], x[256];
    size_t in = images_idx(ib, NI), ln = labels_idx(lb, NI);
    const char *img = write_file("img", ib, in), *lab = write_file("lab", lb, ln);
    vkt_dataset *d = (vkt_dataset *)1;

    /* Truncated, raw and gzip; longer than the header says. */
    const char *p = write_file("img-short", ib, in - 5);
    expect_error(vkt_dataset_open_idx(p, lab, &d), VKT_ERR_CORRUPT,
                 "img-short: truncated: the header says 5 images of 3x4 (76 bytes) but the "
                 "file holds 71; download it again");
    assert_null(d);
    expect_error(vkt_dataset_open_idx(write_gz("img-short.gz", ib, in - 5), lab, &d),
                 VKT_ERR_CORRUPT, "the file holds 71 unpacked; download it again");
    memcpy(x, ib, in);
    x[in] = 9;
    expect_error(vkt_dataset_open_idx(write_file("img-long", x, in + 1), lab, &d),
                 VKT_ERR_CORRUPT, "but the file holds 77, more than that");
    expect_error(vkt_dataset_open_idx(write_file("img-empty", x, 0), lab, &d), VKT_ERR_CORRUPT,
                 "img-empty: truncated: 0 bytes cannot hold an IDX header");
    expect_error(vkt_dataset_open_idx(write_file("img-head", ib, 10), lab, &d), VKT_ERR_CORRUPT,
                 "10 bytes cannot hold the 16-byte IDX header");

    /* A gzip file cut short, and one whose deflate data is invalid. */
    const char *gz = write_gz("img.gz", ib, in);
    FILE *f = fopen(gz, "rb");
    assert_non_null(f);
    size_t gn = fread(x, 1, sizeof x, f);
    fclose(f);
    expect_error(vkt_dataset_open_idx(write_file("cut.gz", x, gn / 2), lab, &d),
                 VKT_ERR_CORRUPT, "cut.gz: truncated: the gzip stream ends after");
    /* gzip header, then a deflate block of the reserved type 11. */
    const uint8_t bad[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0, 0, 0, 0, 0, 0};
    expect_error(vkt_dataset_open_idx(write_file("bad.gz", bad, sizeof bad), lab, &d),
                 VKT_ERR_CORRUPT, "bad.gz: bad gzip stream at compressed byte");
    expect_error(vkt_dataset_open_idx(img, write_file("bad.gz", bad, sizeof bad), &d),
                 VKT_ERR_CORRUPT, "download it again");

    /* Wrong kinds of file. */
    expect_error(vkt_dataset_open_idx(lab, img, &d), VKT_ERR_CORRUPT,
                 "lab is a labels file (idx1) but was passed as the images file; swap");
    expect_error(vkt_dataset_open_idx(img, img, &d), VKT_ERR_CORRUPT,
                 "img is an images file (idx3) but was passed as the labels file");
    memcpy(x, ib, in);
    x[2] = 0x0d; /* float */
    expect_error(vkt_dataset_open_idx(write_file("img-f32", x, in), lab, &d), VKT_ERR_CORRUPT,
                 "img-f32: IDX element type 0x0d is not supported: only uint8 (0x08)");
    expect_error(vkt_dataset_open_idx(write_file("img-zip", "PK\3\4 not idx", 12), lab, &d),
                 VKT_ERR_CORRUPT, "img-zip: not an IDX file (it starts 50 4b 03 04");
    uint32_t dims2[2] = {NI, ROWS * COLS};
    size_t n2 = make_idx(x, 0x08, 2, dims2, pixels, sizeof pixels);
    expect_error(vkt_dataset_open_idx(write_file("img-2d", x, n2), lab, &d), VKT_ERR_CORRUPT,
                 "an IDX file with 2 dimensions; images files have 3");
    uint32_t dims0[3] = {0, ROWS, COLS};
    size_t n0 = make_idx(x, 0x08, 3, dims0, pixels, 0);
    expect_error(vkt_dataset_open_idx(write_file("img-0", x, n0), lab, &d), VKT_ERR_CORRUPT,
                 "img-0: holds no images");
    uint32_t dims_huge[3] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
    size_t nh = make_idx(x, 0x08, 3, dims_huge, pixels, 4);
    expect_error(vkt_dataset_open_idx(write_file("img-huge", x, nh), lab, &d), VKT_ERR_CORRUPT,
                 "sizes are implausibly large");
    /* a product that wraps past 2^64 to 20 (the review's case): refused
     * before multiplying, not accepted as a tiny file */
    uint32_t dims_wrap[3] = {1423u, 10827767u, 1197225396u};
    size_t nw = make_idx(x, 0x08, 3, dims_wrap, pixels, 20);
    expect_error(vkt_dataset_open_idx(write_file("img-wrap", x, nw), lab, &d), VKT_ERR_CORRUPT,
                 "sizes are implausibly large");

    /* Images and labels that do not belong together. */
    size_t l4 = labels_idx(x, NI - 1);
    expect_error(vkt_dataset_open_idx(img, write_file("lab4", x, l4), &d), VKT_ERR_CORRUPT,
                 "img holds 5 images but");
    expect_error(vkt_dataset_open_idx(img, write_file("lab4", x, l4), &d), VKT_ERR_CORRUPT,
                 "lab4 holds 4 labels; pass the labels that belong to these images");

    expect_error(vkt_dataset_open_idx(path_of("missing"), lab, &d), VKT_ERR_IO, "missing");
    expect_error(vkt_dataset_open_idx(NULL, lab, &d), VKT_ERR_INVALID_ARG, "both");
    assert_null(d);
}

/* ------------------------------------------------------------------------ */
/* Tokens                                                                    */

static const char text[] = "In the beginning \xc3\xa9tait the word, and then more words.";

static void test_text(void **state)
{
    (void)state;
    size_t len = sizeof text - 1; /* 54 */
    const char *p = write_file("text.txt", text, len);
    vkt_dataset *d = NULL;
    assert_int_equal(vkt_dataset_open_text(p, 4, 0, 1, &d), VKT_OK);
    vkt_dataset_info info;
    vkt_dataset_get_info(d, &info);
    assert_int_equal(info.kind, VKT_DATASET_TOKENS);
    assert_int_equal(info.tokens, len);
    assert_int_equal(info.samples, (len - 1) / 4);
    assert_int_equal(info.seq_len, 4);
    assert_int_equal(info.vocab, 256);
    assert_int_equal(info.features, 0);
    const uint16_t *t = vkt_dataset_tokens(d);
    assert_non_null(t);
    for (size_t i = 0; i < len; i++) assert_int_equal(t[i], (uint8_t)text[i]);
    /* Sample i is tokens [4i, 4i+4], inputs the first 4, labels the last 4;
     * the last sample ends on the last usable token. Sample 4 holds the
     * bytes >= 128, widened without sign. */
    uint64_t idx[3] = {4, 0, info.samples - 1};
    int32_t tok[12], lab[12];
    assert_int_equal(vkt_dataset_fill(d, idx, 3, NULL, tok, lab), VKT_OK);
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 4; j++) {
            assert_int_equal(tok[4 * k + j], (uint8_t)text[4 * idx[k] + j]);
            assert_int_equal(lab[4 * k + j], (uint8_t)text[4 * idx[k] + j + 1]);
        }
    assert_int_equal(tok[1], 0xc3);
    uint64_t bad = info.samples;
    expect_error(vkt_dataset_fill(d, &bad, 1, NULL, tok, lab), VKT_ERR_INVALID_ARG, "beyond");
    expect_error(vkt_dataset_fill(d, idx, 1, NULL, NULL, lab), VKT_ERR_INVALID_ARG,
                 "tokens must not be NULL");
    vkt_dataset_close(d);

    /* The second half: tokens [27, 54). */
    assert_int_equal(vkt_dataset_open_text(p, 4, 0.5, 1, &d), VKT_OK);
    vkt_dataset_get_info(d, &info);
    assert_int_equal(info.tokens, len - len / 2);
    assert_int_equal(info.samples, (len - len / 2 - 1) / 4);
    assert_int_equal(vkt_dataset_tokens(d)[0], (uint8_t)text[len / 2]);
    assert_int_equal(vkt_dataset_fill(d, idx + 1, 1, NULL, tok, lab), VKT_OK);
    assert_int_equal(lab[0], (uint8_t)text[len / 2 + 1]);
    vkt_dataset_close(d);
}

static void test_text_errors(void **state)
{
    (void)state;
    const char *p = write_file("text.txt", text, sizeof text - 1);
    vkt_dataset *d = (vkt_dataset *)1;
    expect_error(vkt_dataset_open_text(write_file("short.txt", "abc", 3), 3, 0, 1, &d),
                 VKT_ERR_CORRUPT,
                 "short.txt: holds 3 tokens, too few for one sample of seq_len + 1 = 4");
    assert_null(d);
    expect_error(vkt_dataset_open_text(p, 8, 0.9, 1, &d), VKT_ERR_INVALID_ARG,
                 "the part [0.9, 1) holds 6 of its 54 tokens, too few for one sample");
    expect_error(vkt_dataset_open_text(p, 4, -0.1, 1, &d), VKT_ERR_INVALID_ARG,
                 "must lie within [0, 1]");
    expect_error(vkt_dataset_open_text(p, 4, 0, 1.5, &d), VKT_ERR_INVALID_ARG,
                 "the part [0, 1.5) must lie within [0, 1]");
    expect_error(vkt_dataset_open_text(p, 4, NAN, 1, &d), VKT_ERR_INVALID_ARG,
                 "must lie within [0, 1]");
    expect_error(vkt_dataset_open_text(p, 4, 0.5, 0.5, &d), VKT_ERR_INVALID_ARG,
                 "the part [0.5, 0.5) is empty");
    expect_error(vkt_dataset_open_text(p, 4, 0.7, 0.2, &d), VKT_ERR_INVALID_ARG,
                 "'from' must be below 'to'");
    expect_error(vkt_dataset_open_text(p, 0, 0, 1, &d), VKT_ERR_INVALID_ARG,
                 "seq_len must be at least 1");
    expect_error(vkt_dataset_open_text(path_of("nope.txt"), 4, 0, 1, &d), VKT_ERR_IO,
                 "nope.txt");
    assert_null(d);
}

enum { NT = 23 };

static void fill_tokens(uint16_t *t)
{
    for (int i = 0; i < NT; i++) t[i] = (uint16_t)(i * 2311 % 50000);
    t[20] = 50256; /* GPT-2's end of text, the largest */
}

static void test_bin(void **state)
{
    (void)state;
    uint16_t t[NT];
    fill_tokens(t);
    uint8_t b[1024 + 2 * NT];
    const char *p = write_file("tok.bin", b, make_bin(b, 20240520, 1, NT, t, NT));
    vkt_dataset *d = NULL;
    assert_int_equal(vkt_dataset_open_tokens(p, 5, 0, 1, &d), VKT_OK);
    vkt_dataset_info info;
    vkt_dataset_get_info(d, &info);
    assert_int_equal(info.kind, VKT_DATASET_TOKENS);
    assert_int_equal(info.tokens, NT);
    assert_int_equal(info.samples, (NT - 1) / 5); /* 4 */
    assert_int_equal(info.vocab, 50257);
    assert_memory_equal(vkt_dataset_tokens(d), t, sizeof t);
    uint64_t idx[2] = {3, 1};
    int32_t tok[10], lab[10];
    assert_int_equal(vkt_dataset_fill(d, idx, 2, NULL, tok, lab), VKT_OK);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 5; j++) {
            assert_int_equal(tok[5 * k + j], t[5 * idx[k] + j]);
            assert_int_equal(lab[5 * k + j], t[5 * idx[k] + j + 1]);
        }
    assert_int_equal(lab[4], 50256); /* sample 3's labels end on token 20 */
    vkt_dataset_close(d);

    /* The first 60 %: tokens [0, 13); the vocabulary still covers the file. */
    assert_int_equal(vkt_dataset_open_tokens(p, 5, 0, 0.6, &d), VKT_OK);
    vkt_dataset_get_info(d, &info);
    assert_int_equal(info.tokens, 13);
    assert_int_equal(info.samples, 2);
    assert_int_equal(info.vocab, 50257);
    vkt_dataset_close(d);
}

static void test_bin_errors(void **state)
{
    (void)state;
    uint16_t t[NT];
    fill_tokens(t);
    uint8_t b[1024 + 2 * NT + 2];
    vkt_dataset *d = (vkt_dataset *)1;
    size_t n = make_bin(b, 20240521, 1, NT, t, NT);
    expect_error(vkt_dataset_open_tokens(write_file("magic.bin", b, n), 5, 0, 1, &d),
                 VKT_ERR_CORRUPT,
                 "magic.bin: not an llm.c token file: its magic number is 20240521, not "
                 "20240520");
    assert_null(d);
    n = make_bin(b, 20240520, 2, NT, t, NT);
    expect_error(vkt_dataset_open_tokens(write_file("v2.bin", b, n), 5, 0, 1, &d),
                 VKT_ERR_CORRUPT, "version 2 is not supported; only version 1");
    n = make_bin(b, 20240520, 1, 100, t, NT);
    expect_error(vkt_dataset_open_tokens(write_file("count.bin", b, n), 5, 0, 1, &d),
                 VKT_ERR_CORRUPT,
                 "count.bin: truncated: the header says 100 tokens (1224 bytes) but the file "
                 "holds 1070");
    n = make_bin(b, 20240520, 1, NT, t, NT);
    expect_error(vkt_dataset_open_tokens(write_file("long.bin", b, n + 2), 5, 0, 1, &d),
                 VKT_ERR_CORRUPT, "holds 1072, more than that");
    n = make_bin(b, 20240520, 1, -3, t, NT);
    expect_error(vkt_dataset_open_tokens(write_file("neg.bin", b, n), 5, 0, 1, &d),
                 VKT_ERR_CORRUPT, "token count is negative (-3)");
    expect_error(vkt_dataset_open_tokens(write_file("head.bin", b, 1000), 5, 0, 1, &d),
                 VKT_ERR_CORRUPT, "head.bin: truncated: 1000 bytes cannot hold the 1024-byte");
    n = make_bin(b, 20240520, 1, 4, t, 4);
    expect_error(vkt_dataset_open_tokens(write_file("few.bin", b, n), 4, 0, 1, &d),
                 VKT_ERR_CORRUPT, "few.bin: holds 4 tokens, too few for one sample");
    n = make_bin(b, 20240520, 1, NT, t, NT);
    expect_error(vkt_dataset_open_tokens(write_file("ok.bin", b, n), 5, 0.3, 0.2, &d),
                 VKT_ERR_INVALID_ARG, "is empty");
    assert_null(d);
}

/* ------------------------------------------------------------------------ */
/* Sampler                                                                   */

static vkt_sampler *sampler(uint64_t n, uint32_t world, uint32_t rank, const uint32_t *rb,
                            bool shuffle, uint64_t seed)
{
    vkt_sampler_opts o = VKT_SAMPLER_OPTS_INIT;
    o.samples = n;
    o.world = world;
    o.rank = rank;
    o.rank_batch = rb;
    o.shuffle = shuffle;
    o.seed = seed;
    vkt_sampler *s = NULL;
    if (vkt_sampler_create(&o, &s) != VKT_OK) fail_msg("sampler: %s", vkt_last_error());
    return s;
}

/* The whole order of an epoch, from a one-rank sampler whose micro-batch is
 * the data set: the order depends on (seed, epoch, n) only. */
static void epoch_order(uint64_t n, uint64_t seed, uint64_t epoch, uint64_t *order)
{
    uint32_t all = (uint32_t)n;
    vkt_sampler *s = sampler(n, 1, 0, &all, true, seed);
    assert_int_equal(vkt_sampler_seek(s, epoch * n), VKT_OK);
    uint64_t e = 99;
    vkt_sampler_next(s, order, &e);
    assert_int_equal(e, epoch);
    vkt_sampler_destroy(s);
    /* It is a permutation. */
    uint8_t seen[256] = {0};
    for (uint64_t i = 0; i < n; i++) {
        assert_true(order[i] < n);
        assert_int_equal(seen[order[i]]++, 0);
    }
}

/* Ranks with uneven micro-batches share each epoch's order out exactly. */
static void check_sharding(uint64_t n, uint32_t world, const uint32_t *rb, uint64_t seed)
{
    uint32_t G = 0, off[8];
    for (uint32_t r = 0; r < world; r++) off[r] = G, G += rb[r];
    uint64_t steps = n / G, order[256], got[8];
    vkt_sampler *s[8];
    for (uint32_t r = 0; r < world; r++) {
        s[r] = sampler(n, world, r, rb, true, seed);
        assert_int_equal(vkt_sampler_steps_per_epoch(s[r]), steps);
    }
    for (uint64_t e = 0; e < 3; e++) {
        epoch_order(n, seed, e, order);
        uint8_t seen[256] = {0};
        for (uint64_t st = 0; st < steps; st++)
            for (uint32_t r = 0; r < world; r++) {
                uint64_t ep = 99;
                vkt_sampler_next(s[r], got, &ep);
                assert_int_equal(ep, e);
                for (uint32_t k = 0; k < rb[r]; k++) {
                    assert_int_equal(got[k], order[st * G + off[r] + k]);
                    assert_int_equal(seen[got[k]]++, 0); /* disjoint */
                }
                assert_int_equal(vkt_sampler_position(s[r]), (e * steps + st + 1) * G);
            }
        /* Together: exactly the first steps·G positions of the order. */
        for (uint64_t i = 0; i < n; i++) assert_int_equal(seen[order[i]], i < steps * G);
    }
    for (uint32_t r = 0; r < world; r++) vkt_sampler_destroy(s[r]);
}

static void test_sampler_sharding(void **state)
{
    (void)state;
    const uint32_t rb2[2] = {3, 5}, rb3[3] = {1, 4, 2}, rb1[1] = {6};
    check_sharding(37, 2, rb2, 42); /* G 8, 4 steps, 5 dropped */
    check_sharding(40, 2, rb2, 7);  /* nothing dropped */
    check_sharding(23, 3, rb3, 1);
    check_sharding(12, 1, rb1, 0);
}

static void test_sampler_order(void **state)
{
    (void)state;
    uint64_t a[100], b[100], c[100], e1[100];
    epoch_order(100, 5, 0, a);
    epoch_order(100, 5, 0, b);
    epoch_order(100, 6, 0, c);
    epoch_order(100, 5, 1, e1);
    assert_memory_equal(a, b, sizeof a); /* same seed, same order */
    assert_memory_not_equal(a, c, sizeof a);
    assert_memory_not_equal(a, e1, sizeof a);
    int fixed = 0;
    for (int i = 0; i < 100; i++) fixed += a[i] == (uint64_t)i;
    assert_true(fixed < 10); /* a shuffle, not nearly the identity */

    /* Without shuffling: 0..n-1 in order, epoch after epoch. */
    const uint32_t rb[2] = {2, 3};
    vkt_sampler *s0 = sampler(11, 2, 0, rb, false, 5), *s1 = sampler(11, 2, 1, rb, false, 5);
    for (uint64_t e = 0; e < 2; e++)
        for (uint64_t st = 0; st < 2; st++) {
            uint64_t x[3], ep;
            vkt_sampler_next(s0, x, &ep);
            assert_int_equal(ep, e);
            assert_int_equal(x[0], st * 5);
            assert_int_equal(x[1], st * 5 + 1);
            vkt_sampler_next(s1, x, NULL);
            for (int k = 0; k < 3; k++) assert_int_equal(x[k], st * 5 + 2 + (uint64_t)k);
        }
    vkt_sampler_destroy(s0);
    vkt_sampler_destroy(s1);
    vkt_sampler_destroy(NULL);
}

static void test_sampler_seek(void **state)
{
    (void)state;
    const uint32_t rb[2] = {3, 5};
    vkt_sampler *a = sampler(37, 2, 1, rb, true, 9);
    uint64_t x[5], y[5], ea, eb;
    for (int i = 0; i < 6; i++) vkt_sampler_next(a, x, NULL); /* into epoch 1 */
    uint64_t pos = vkt_sampler_position(a);
    assert_int_equal(pos, 48);
    vkt_sampler *b = sampler(37, 2, 1, rb, true, 9);
    assert_int_equal(vkt_sampler_seek(b, pos), VKT_OK);
    assert_int_equal(vkt_sampler_position(b), pos);
    for (int i = 0; i < 7; i++) { /* across the end of epoch 1 */
        vkt_sampler_next(a, x, &ea);
        vkt_sampler_next(b, y, &eb);
        assert_memory_equal(x, y, sizeof x);
        assert_int_equal(ea, eb);
    }
    assert_int_equal(ea, 3);
    /* Seeking back replays. */
    assert_int_equal(vkt_sampler_seek(b, 8), VKT_OK);
    vkt_sampler *c = sampler(37, 2, 1, rb, true, 9);
    vkt_sampler_next(c, x, NULL);
    vkt_sampler_next(c, x, NULL);
    vkt_sampler_next(b, y, NULL);
    assert_memory_equal(x, y, sizeof x);
    expect_error(vkt_sampler_seek(b, 12), VKT_ERR_INVALID_ARG,
                 "position 12 is not a multiple of the global micro-batch 8");
    assert_int_equal(vkt_sampler_position(b), 16);
    vkt_sampler_destroy(a);
    vkt_sampler_destroy(b);
    vkt_sampler_destroy(c);
}

static void test_sampler_errors(void **state)
{
    (void)state;
    const uint32_t rb[2] = {3, 5}, rb0[2] = {3, 0};
    vkt_sampler_opts o = VKT_SAMPLER_OPTS_INIT;
    vkt_sampler *s = (vkt_sampler *)1;
    o.samples = 7;
    o.world = 2;
    o.rank_batch = rb;
    expect_error(vkt_sampler_create(&o, &s), VKT_ERR_INVALID_ARG,
                 "the data set has 7 samples, fewer than one global micro-batch of 8");
    assert_null(s);
    o.samples = 100;
    o.rank = 2;
    expect_error(vkt_sampler_create(&o, &s), VKT_ERR_INVALID_ARG, "rank 2 of world 2");
    o.rank = 0;
    o.rank_batch = rb0;
    expect_error(vkt_sampler_create(&o, &s), VKT_ERR_INVALID_ARG,
                 "rank 1's micro-batch size is 0");
    o.rank_batch = NULL;
    expect_error(vkt_sampler_create(&o, &s), VKT_ERR_INVALID_ARG, "rank_batch is NULL");
    o.rank_batch = rb;
    o.struct_size = 8;
    expect_error(vkt_sampler_create(&o, &s), VKT_ERR_INVALID_ARG, "VKT_SAMPLER_OPTS_INIT");
    assert_null(s);
    expect_error(vkt_sampler_seek(NULL, 0), VKT_ERR_INVALID_ARG, "not a sampler");
}

/* ------------------------------------------------------------------------ */
/* The real Fashion-MNIST (only with a directory argument)                  */

static void test_fashion_mnist(void **state)
{
    (void)state;
    char img[512], lab[512];
    vkt_dataset *d = NULL;
    vkt_dataset_info info;
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", fashion_dir);
    snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", fashion_dir);
    if (vkt_dataset_open_idx(img, lab, &d) != VKT_OK) fail_msg("%s", vkt_last_error());
    vkt_dataset_get_info(d, &info);
    assert_int_equal(info.samples, 60000);
    assert_int_equal(info.features, 784);
    assert_int_equal(info.classes, 10);
    /* Known values, read with Python:
     *   d = gzip.open('train-labels-idx1-ubyte.gz').read(); d[8] -> 9 (ankle boot)
     *   d = gzip.open('train-images-idx3-ubyte.gz').read(); sum(d[16:16+784]) -> 76247 */
    uint64_t first = 0;
    float in[784];
    int32_t label = -1;
    assert_int_equal(vkt_dataset_fill(d, &first, 1, in, NULL, &label), VKT_OK);
    assert_int_equal(label, 9);
    double sum = 0;
    for (int i = 0; i < 784; i++) sum += in[i];
    assert_true(fabs(sum * 255 - 76247) < 0.01);
    vkt_dataset_close(d);

    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", fashion_dir);
    snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte.gz", fashion_dir);
    if (vkt_dataset_open_idx(img, lab, &d) != VKT_OK) fail_msg("%s", vkt_last_error());
    vkt_dataset_get_info(d, &info);
    assert_int_equal(info.samples, 10000);
    assert_int_equal(info.features, 784);
    assert_int_equal(info.classes, 10);
    assert_int_equal(vkt_dataset_fill(d, &first, 1, in, NULL, &label), VKT_OK);
    assert_int_equal(label, 9); /* gzip.open('t10k-labels-idx1-ubyte.gz').read()[8] */
    vkt_dataset_close(d);
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        fashion_dir = argv[1];
        const struct CMUnitTest real[] = {cmocka_unit_test(test_fashion_mnist)};
        return cmocka_run_group_tests(real, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idx_raw_and_gzip), cmocka_unit_test(test_idx_gzip_members),
        cmocka_unit_test(test_idx_damaged),      cmocka_unit_test(test_text),
        cmocka_unit_test(test_text_errors),      cmocka_unit_test(test_bin),
        cmocka_unit_test(test_bin_errors),       cmocka_unit_test(test_sampler_sharding),
        cmocka_unit_test(test_sampler_order),    cmocka_unit_test(test_sampler_seek),
        cmocka_unit_test(test_sampler_errors),
    };
    return cmocka_run_group_tests(tests, make_tmp, remove_tmp);
}
