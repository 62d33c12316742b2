/* Checkpoint directories: round trip, re-sharding across world sizes and
 * stages, every corruption class, a process killed mid-save, and the real
 * `vktrain ckpt` command (argv[1]) consolidating and describing them. */
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "formats/ckpt_index.h"
#include "formats/file.h"
#include "vktrain/alloc.h"

static const char *exe;
static char tmp[64], run[128];

/* ------------------------------------------------------------------------ */
/* A small model and DeepSpeed's shard layout for it                         */

typedef struct pdef {
    const char *name;
    uint32_t ndim;
    uint64_t shape[2];
    int bucket;
} pdef;

static const pdef model[] = {
    {"wte", 2, {10, 4}, 0}, {"h.0.w", 2, {4, 4}, 0}, {"h.0.b", 1, {4}, 1},
    {"h.1.w", 2, {4, 3}, 1}, {"ln.g", 1, {3}, 2},     {"scale", 0, {0}, 2},
};
#define NP (sizeof model / sizeof model[0])
#define MAXW 8

typedef struct layout {
    uint32_t world, stage;
    vkt_ckpt_param params[NP];
    uint64_t flat_len;
    vkt_ckpt_range ranges[MAXW][4];
    size_t nranges[MAXW];
} layout;

/* Parameters packed per bucket; each bucket padded to a multiple of
 * world x align and split in equal parts, rank r owning part r (stages
 * 1-3). Stage 0: buckets padded to align only, rank 0 owns everything. */
static void build_layout(layout *L, uint32_t world, uint32_t stage, uint64_t align)
{
    memset(L, 0, sizeof *L);
    L->world = world;
    L->stage = stage;
    uint64_t at = 0, unit = stage ? world * align : align;
    for (int b = 0, i = 0; b < 3; b++) {
        uint64_t start = at;
        for (; i < (int)NP && model[i].bucket == b; i++) {
            vkt_ckpt_param *p = &L->params[i];
            p->name = model[i].name;
            p->ndim = model[i].ndim;
            p->numel = 1;
            for (uint32_t d = 0; d < p->ndim; d++) p->numel *= (p->shape[d] = model[i].shape[d]);
            p->offset = at;
            at += p->numel;
        }
        at = start + (at - start + unit - 1) / unit * unit;
        uint64_t part = (at - start) / (stage ? world : 1);
        for (uint32_t r = 0; stage && r < world; r++)
            L->ranges[r][L->nranges[r]++] = (vkt_ckpt_range){start + r * part, part};
    }
    L->flat_len = at;
    if (!stage) L->ranges[0][L->nranges[0]++] = (vkt_ckpt_range){0, at};
}

/* The known values of state k (0 = master) in layout L; padding zero. */
static float *known_flat(const layout *L, int k, float salt)
{
    float *f = calloc(L->flat_len + 1, sizeof *f);
    for (size_t i = 0; i < NP; i++)
        for (uint64_t j = 0; j < L->params[i].numel; j++)
            f[L->params[i].offset + j] = (float)(k * 100000 + (int)i * 1000 + (int)j) + salt;
    return f;
}

static const char *kinds[] = {VKT_CKPT_MASTER, "exp_avg", "exp_avg_sq"};
#define NK 3
static const char *cfg_json = "{\"train_batch_size\":32,\"zero_optimization\":{\"stage\":2}}";

/* Save step with layout L as every rank would, then commit. */
static vkt_status save(uint64_t step, const layout *L, float salt)
{
    assert_int_equal(vkt__ckpt_begin(run, step), VKT_OK);
    float *flat[NK];
    for (int k = 0; k < NK; k++) flat[k] = known_flat(L, k, salt);
    static vkt_ckpt_filerec files[MAXW][2];
    vkt_ckpt_rank ranks[MAXW];
    for (uint32_t r = 0; r < L->world; r++) {
        ranks[r] = (vkt_ckpt_rank){L->ranges[r], L->nranges[r], files[r], 0};
        uint64_t n = 0;
        for (size_t j = 0; j < L->nranges[r]; j++) n += L->ranges[r][j].count;
        if (!n) continue;
        float *shard[NK];
        for (int k = 0; k < NK; k++) { /* a rank holds its parts concatenated */
            shard[k] = malloc(n * sizeof(float));
            for (size_t j = 0, at = 0; j < L->nranges[r]; at += L->ranges[r][j++].count)
                memcpy(shard[k] + at, flat[k] + L->ranges[r][j].offset,
                       L->ranges[r][j].count * sizeof(float));
        }
        assert_int_equal(vkt__ckpt_write_shard(run, step, r, L->world, L->stage, L->ranges[r],
                                               L->nranges[r], kinds, (const float *const *)shard,
                                               NK, &files[r][ranks[r].nfiles++]), VKT_OK);
        for (int k = 0; k < NK; k++) free(shard[k]);
    }
    vkt_st_tensor t[NP];
    for (size_t i = 0; i < NP; i++) {
        t[i] = (vkt_st_tensor){.name = L->params[i].name, .dtype = VKT_ST_F32,
                               .ndim = L->params[i].ndim, .data = flat[0] + L->params[i].offset};
        memcpy(t[i].shape, L->params[i].shape, sizeof t[i].shape);
    }
    assert_int_equal(vkt__ckpt_write_model(run, step, t, NP, &files[0][ranks[0].nfiles++]), VKT_OK);
    vkt_ckpt_index idx = {.step = step, .samples_seen = step * 32, .world_size = L->world,
                          .zero_stage = L->stage, .dtype = VKT_DTYPE_F32,
                          .states = {"exp_avg", "exp_avg_sq"}, .nstates = 2,
                          .params = L->params, .nparams = NP, .flat_length = L->flat_len,
                          .alignment = 4, .ranks = ranks, .loss_scaler = "{\"scale\":65536}",
                          .scheduler = "{\"last_step\":7}",
                          .rng = "{\"seed\":\"00ff00ff00ff00ff\"}",
                          .data_position = "{\"epoch\":1,\"index\":96}", .config = cfg_json};
    vkt_status st = vkt__ckpt_commit(run, &idx);
    for (int k = 0; k < NK; k++) free(flat[k]);
    return st;
}

static int setup(void **state)
{
    strcpy(tmp, "/tmp/vkt-test-ckpt.XXXXXX");
    if (!mkdtemp(tmp)) return -1;
    snprintf(run, sizeof run, "%s/run", tmp);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd);
}

static vkt_ckpt_index *open_ok(char *step_dir)
{
    vkt_ckpt_index *idx = NULL;
    vkt_status st = vkt__ckpt_open(run, step_dir, 4096, &idx);
    if (st != VKT_OK) fail_msg("open failed: %s", vkt_last_error());
    return idx;
}

/* load_flat of every kind equals the known arrays of L exactly. */
static void expect_contents(const char *dir, const vkt_ckpt_index *idx, const layout *L, float salt)
{
    assert_int_equal(idx->flat_length, L->flat_len);
    float *got = malloc(L->flat_len * sizeof(float));
    for (int k = 0; k < NK; k++) {
        float *want = known_flat(L, k, salt);
        assert_int_equal(vkt__ckpt_load_flat(dir, idx, kinds[k], got), VKT_OK);
        assert_memory_equal(got, want, L->flat_len * sizeof(float));
        free(want);
    }
    free(got);
}

static void round_trip(void **state)
{
    layout L;
    build_layout(&L, 4, 2, 4);
    assert_int_equal(save(10, &L, 0.5f), VKT_OK);
    char dir[4096];
    vkt_ckpt_index *idx = open_ok(dir);
    assert_non_null(strstr(dir, "/run/step-000010"));
    assert_int_equal(idx->step, 10);
    assert_int_equal(idx->samples_seen, 320);
    assert_int_equal(idx->world_size, 4);
    assert_int_equal(idx->zero_stage, 2);
    assert_int_equal(idx->nstates, 2);
    assert_string_equal(idx->states[1], "exp_avg_sq");
    assert_string_equal(idx->config, cfg_json);
    assert_string_equal(idx->rng, "{\"seed\":\"00ff00ff00ff00ff\"}");
    assert_string_equal(idx->data_position, "{\"epoch\":1,\"index\":96}");
    assert_int_equal(vkt__ckpt_check_model(idx, dir, L.params, NP), VKT_OK);
    expect_contents(dir, idx, &L, 0.5f);
    assert_int_equal(vkt__ckpt_load_flat(dir, idx, "momentum_buffer", NULL), VKT_ERR_INVALID_ARG);
    vkt__ckpt_index_free(idx);

    char p[256];
    void *text = NULL;
    size_t n = 0;
    snprintf(p, sizeof p, "%s/latest", run);
    assert_int_equal(vkt__file_read(p, 100, &text, &n), VKT_OK);
    assert_string_equal(text, "step-000010\n");
    vkt_free(text);
    /* The weights file reads as plain safetensors, tensors by name. */
    snprintf(p, sizeof p, "%s/step-000010/model.safetensors", run);
    vkt_st_file *f = NULL;
    assert_int_equal(vkt__st_open(p, &f), VKT_OK);
    assert_int_equal(vkt__st_find(f, "h.1.w")->shape[1], 3);
    assert_true(((const float *)vkt__st_find(f, "h.1.w")->data)[2] == 3002.5f);
    assert_string_equal(vkt__st_meta(f, "format"), "pt");
    vkt__st_close(f);
}

/* World 4 stage 2 -> one flat array, world 2 stage 2, world 3 stage 3,
 * world 1 stage 0, and back: every value lands exactly where the target
 * layout wants it. */
static void reshard(void **state)
{
    layout L4, L;
    build_layout(&L4, 4, 2, 4);
    assert_int_equal(save(20, &L4, 0.25f), VKT_OK);
    char dir[4096];
    vkt_ckpt_index *idx = open_ok(dir);
    float *flat = malloc(L4.flat_len * sizeof(float));
    assert_int_equal(vkt__ckpt_load_flat(dir, idx, "exp_avg", flat), VKT_OK);
    float *want4 = known_flat(&L4, 1, 0.25f);
    assert_memory_equal(flat, want4, L4.flat_len * sizeof(float));
    free(want4);
    const uint32_t worlds[3] = {2, 3, 1}, stages[3] = {2, 3, 0};
    for (int c = 0; c < 3; c++) {
        build_layout(&L, worlds[c], stages[c], 4);
        bool moved = false; /* the padding differs, so parameters move */
        for (size_t i = 0; i < NP; i++) moved |= L.params[i].offset != L4.params[i].offset;
        assert_true(moved);
        float *out = malloc(L.flat_len * sizeof(float)), *want = known_flat(&L, 1, 0.25f);
        assert_int_equal(vkt__ckpt_relayout(idx, flat, L.params, NP, L.flat_len, out), VKT_OK);
        /* Each new rank's ranges hold exactly its share. */
        for (uint32_t r = 0; r < L.world; r++)
            for (size_t j = 0; j < L.nranges[r]; j++)
                assert_memory_equal(out + L.ranges[r][j].offset, want + L.ranges[r][j].offset,
                                    L.ranges[r][j].count * sizeof(float));
        assert_memory_equal(out, want, L.flat_len * sizeof(float));
        free(out);
        free(want);
    }
    vkt__ckpt_index_free(idx);
    /* A stage-0 checkpoint (rank 0 owns all) reshards to world 4 too. */
    build_layout(&L, 2, 0, 4);
    assert_int_equal(save(30, &L, 0.75f), VKT_OK);
    idx = open_ok(dir);
    assert_int_equal(idx->step, 30);
    expect_contents(dir, idx, &L, 0.75f);
    float *src = malloc(L.flat_len * sizeof(float)), *out = malloc(L4.flat_len * sizeof(float));
    assert_int_equal(vkt__ckpt_load_flat(dir, idx, VKT_CKPT_MASTER, src), VKT_OK);
    assert_int_equal(vkt__ckpt_relayout(idx, src, L4.params, NP, L4.flat_len, out), VKT_OK);
    float *want = known_flat(&L4, 0, 0.75f);
    assert_memory_equal(out, want, L4.flat_len * sizeof(float));
    /* Another model cannot take it. */
    vkt_ckpt_param other[NP];
    memcpy(other, L4.params, sizeof other);
    other[3].shape[1] = 5;
    other[3].numel = 20;
    assert_int_equal(vkt__ckpt_relayout(idx, src, other, NP, L4.flat_len, out),
                     VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "'h.1.w' is [4, 3] in the checkpoint but [4, 5]"));
    free(want);
    free(src);
    free(out);
    free(flat);
    vkt__ckpt_index_free(idx);
}

static void flip_byte(const char *rel, long where)
{
    char p[256];
    snprintf(p, sizeof p, "%s/step-000010/%s", run, rel);
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    if (where < 0) fseek(f, where, SEEK_END);
    else fseek(f, where, SEEK_SET);
    int c = fgetc(f);
    fseek(f, -1, SEEK_CUR);
    fputc(c ^ 0x10, f);
    fclose(f);
}

/* open must fail with st and a message holding both needles. */
static void expect_open_fails(vkt_status st, const char *n1, const char *n2)
{
    char dir[4096];
    vkt_ckpt_index *idx = (vkt_ckpt_index *)1;
    assert_int_equal(vkt__ckpt_open(run, dir, sizeof dir, &idx), st);
    assert_null(idx);
    const char *e = vkt_last_error();
    if (!strstr(e, n1) || (n2 && !strstr(e, n2)))
        fail_msg("message lacks '%s'/'%s': %s", n1, n2 ? n2 : "", e);
}

static void fresh(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", run);
    assert_int_equal(system(cmd), 0);
    layout L;
    build_layout(&L, 4, 2, 4);
    assert_int_equal(save(10, &L, 0), VKT_OK);
}

static void corrupt_files(void **state)
{
    char p[256];
    fresh();
    flip_byte("rank_00001.safetensors", -5); /* a byte of data */
    expect_open_fails(VKT_ERR_CORRUPT, "rank 1's shard",
                      "rank_00001.safetensors fails its checksum");
    fresh();
    flip_byte("rank_00002.safetensors", 20); /* a byte of the header */
    expect_open_fails(VKT_ERR_CORRUPT, "rank 2's shard", "fails its checksum");
    fresh();
    snprintf(p, sizeof p, "%s/step-000010/rank_00003.safetensors", run);
    assert_int_equal(truncate(p, 100), 0);
    expect_open_fails(VKT_ERR_CORRUPT, "rank 3's shard", "is truncated: it has 100 bytes");
    fresh();
    snprintf(p, sizeof p, "%s/step-000010/rank_00002.safetensors", run);
    assert_int_equal(unlink(p), 0);
    char want[300];
    snprintf(want, sizeof want, "rank 2's shard %s is missing", p);
    expect_open_fails(VKT_ERR_CORRUPT, want, NULL);
    fresh();
    flip_byte("model.safetensors", -1);
    expect_open_fails(VKT_ERR_CORRUPT, "rank 0's model file", "fails its checksum");
    fresh();
    flip_byte("index.json", 0); /* '{' -> 'k' */
    expect_open_fails(VKT_ERR_CORRUPT, "index.json is not valid JSON", NULL);
    fresh();
    snprintf(p, sizeof p, "%s/latest", run);
    vkt_file_part l = {"step-000011\n", 12};
    assert_int_equal(vkt__file_write_atomic(p, &l, 1), VKT_OK);
    expect_open_fails(VKT_ERR_CORRUPT, "latest names", "step-000011, which has no index.json");
    snprintf(p, sizeof p, "%s/nothing", tmp);
    char dir[4096];
    vkt_ckpt_index *idx = NULL;
    assert_int_equal(vkt__ckpt_open(p, dir, sizeof dir, &idx), VKT_ERR_IO);
    assert_non_null(strstr(vkt_last_error(), "neither a checkpoint step directory"));
}

/* Rewrite index.json with edit applied, then expect open to fail. */
static void tamper_index(void (*edit)(json_t *), const char *n1, const char *n2)
{
    fresh();
    char p[256];
    snprintf(p, sizeof p, "%s/step-000010/index.json", run);
    json_t *root = json_load_file(p, 0, NULL);
    assert_non_null(root);
    edit(root);
    assert_int_equal(json_dump_file(root, p, 0), 0);
    json_decref(root);
    expect_open_fails(VKT_ERR_CORRUPT, n1, n2);
}

static json_t *rank_ranges(json_t *root, int r)
{
    return json_object_get(json_array_get(json_object_get(root, "ranks"), r), "ranges");
}

static void edit_overlap(json_t *root) /* rank 1's first range starts inside rank 0's */
{
    json_array_set_new(json_array_get(rank_ranges(root, 1), 0), 0, json_integer(2));
}
static void edit_uncovered(json_t *root) /* rank 3 drops its first range */
{
    json_array_remove(rank_ranges(root, 3), 0);
}
static void edit_world(json_t *root) { json_object_set_new(root, "world_size", json_integer(5)); }
static void edit_param(json_t *root) /* a parameter past the end of the buffer */
{
    json_t *p = json_array_get(json_object_get(root, "params"), 4);
    json_object_set_new(p, "offset", json_integer(1000));
}
static void edit_version(json_t *root) { json_object_set_new(root, "version", json_integer(9)); }
static void edit_hex(json_t *root) /* a sign strtoull would take: 2^64 - 1 */
{
    json_t *files = json_object_get(json_array_get(json_object_get(root, "ranks"), 0), "files");
    json_object_set_new(json_array_get(files, 0), "xxh64", json_string("-000000000000001"));
}

static void corrupt_index(void **state)
{
    tamper_index(edit_overlap, "rank 1's range at 2 overlaps rank 0's range [0, 16)", NULL);
    tamper_index(edit_uncovered, "element 8 of parameter 'h.0.w' is owned by no rank", NULL);
    tamper_index(edit_world, "'ranks' is not a list of world_size (5) entries", NULL);
    tamper_index(edit_param, "parameter 'ln.g'", "lies outside the flat buffer");
    tamper_index(edit_hex, "rank 0: file 'rank_00000.safetensors': xxh64 is not 16 hex digits",
                 NULL);
    fresh();
    char p[256];
    snprintf(p, sizeof p, "%s/step-000010/index.json", run);
    json_t *root = json_load_file(p, 0, NULL);
    edit_version(root);
    json_dump_file(root, p, 0);
    json_decref(root);
    expect_open_fails(VKT_ERR_UNSUPPORTED, "format version 9 is newer", NULL);
}

static void other_model(void **state)
{
    fresh();
    char dir[4096];
    vkt_ckpt_index *idx = open_ok(dir);
    layout L;
    build_layout(&L, 4, 2, 4);
    L.params[2].name = "h.0.bias";
    assert_int_equal(vkt__ckpt_check_model(idx, dir, L.params, NP), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "is from another model: its parameter 2 is 'h.0.b' "
                                             "[4], this model's is 'h.0.bias' [4]"));
    build_layout(&L, 4, 2, 4);
    L.params[0].shape[0] = 11;
    assert_int_equal(vkt__ckpt_check_model(idx, dir, L.params, NP), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "'wte' [10, 4], this model's is 'wte' [11, 4]"));
    build_layout(&L, 4, 2, 4);
    assert_int_equal(vkt__ckpt_check_model(idx, dir, L.params, NP - 1), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "the first extra one is 'scale'"));
    vkt__ckpt_index_free(idx);
}

/* A save killed in the middle of a large write, and one killed while
 * writing the index, leave the previous checkpoint and `latest` usable;
 * the next save succeeds. RLIMIT_FSIZE makes the kernel kill the child
 * (SIGXFSZ) at an exact byte of its write, so the test is deterministic. */
static void crash_child(uint64_t step, const layout *L, rlim_t limit)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_DFL);
        struct rlimit core = {0, 0}, fs = {limit, RLIM_INFINITY};
        setrlimit(RLIMIT_CORE, &core);
        setrlimit(RLIMIT_FSIZE, &fs);
        save(step, L, 9.0f);
        _exit(0); /* not reached: the kernel kills the write */
    }
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFSIGNALED(ws));
    assert_int_equal(WTERMSIG(ws), SIGXFSZ);
}

static void crash_keeps_previous(void **state)
{
    layout small, big;
    build_layout(&small, 4, 2, 4);
    assert_int_equal(save(100, &small, 1.0f), VKT_OK);
    build_layout(&big, 2, 1, 1 << 18); /* buckets of 2 Mi floats: 8 MiB per state */
    crash_child(200, &big, 1 << 20);
    char dir[4096], p[256];
    vkt_ckpt_index *idx = open_ok(dir);
    assert_int_equal(idx->step, 100);
    expect_contents(dir, idx, &small, 1.0f);
    vkt__ckpt_index_free(idx);
    snprintf(p, sizeof p, "%s/step-000200", run);
    assert_int_equal(access(p, F_OK), -1);
    snprintf(p, sizeof p, "%s/step-000200.partial", run);
    assert_int_equal(access(p, F_OK), 0); /* what the crash left */
    /* Now the next save over the leftovers succeeds. */
    assert_int_equal(save(200, &big, 2.0f), VKT_OK);
    idx = open_ok(dir);
    assert_int_equal(idx->step, 200);
    expect_contents(dir, idx, &big, 2.0f);
    vkt__ckpt_index_free(idx);
    assert_int_equal(access(p, F_OK), -1);
}

/* Die while writing index.json: shards are complete, the index is not. */
static void crash_in_commit(void **state)
{
    layout L;
    build_layout(&L, 4, 2, 4);
    assert_int_equal(save(100, &L, 1.0f), VKT_OK);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_DFL);
        struct rlimit core = {0, 0};
        setrlimit(RLIMIT_CORE, &core);
        /* Every shard file is under 2 KiB, index.json is larger. */
        char p[256];
        snprintf(p, sizeof p, "%s/step-000100/index.json", run);
        struct stat sb;
        stat(p, &sb);
        struct rlimit fs = {(rlim_t)sb.st_size - 64, RLIM_INFINITY};
        setrlimit(RLIMIT_FSIZE, &fs);
        save(101, &L, 5.0f);
        _exit(0);
    }
    int ws = 0;
    assert_int_equal(waitpid(pid, &ws, 0), pid);
    assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGXFSZ);
    char dir[4096], p[256];
    vkt_ckpt_index *idx = open_ok(dir);
    assert_int_equal(idx->step, 100);
    expect_contents(dir, idx, &L, 1.0f);
    vkt__ckpt_index_free(idx);
    snprintf(p, sizeof p, "%s/step-000101/index.json", run);
    assert_int_equal(access(p, F_OK), -1);
}

/* Saving the same step again replaces it whole; a commit whose files are
 * not there, or whose index is inconsistent, changes nothing. */
static void resave_and_refused_commits(void **state)
{
    layout L;
    build_layout(&L, 4, 2, 4);
    assert_int_equal(save(7, &L, 1.0f), VKT_OK);
    assert_int_equal(save(7, &L, 3.0f), VKT_OK);
    char dir[4096], p[256];
    vkt_ckpt_index *idx = open_ok(dir);
    expect_contents(dir, idx, &L, 3.0f);
    vkt__ckpt_index_free(idx);
    snprintf(p, sizeof p, "%s/step-000007.partial", run);
    assert_int_equal(access(p, F_OK), -1);

    assert_int_equal(vkt__ckpt_begin(run, 8), VKT_OK);
    vkt_ckpt_filerec rec = {.name = "rank_00000.safetensors", .role = "shard", .bytes = 10};
    vkt_ckpt_range all = {0, L.flat_len};
    vkt_ckpt_rank r0 = {&all, 1, &rec, 1};
    vkt_ckpt_index x = {.step = 8, .world_size = 1, .dtype = VKT_DTYPE_F32, .params = L.params,
                        .nparams = NP, .flat_length = L.flat_len, .alignment = 1, .ranks = &r0};
    assert_int_equal(vkt__ckpt_commit(run, &x), VKT_ERR_IO);
    assert_non_null(strstr(vkt_last_error(), "rank 0's file"));
    all.count = 3; /* leaves parameters unowned */
    assert_int_equal(vkt__ckpt_commit(run, &x), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "is owned by no rank"));
    x.config = "{not json";
    all.count = L.flat_len;
    assert_int_equal(vkt__ckpt_commit(run, &x), VKT_ERR_IO); /* files checked first */
    /* The final rename fails (a plain file holds the name): `latest` stays. */
    snprintf(p, sizeof p, "%s/step-000009", run);
    vkt_file_part junk = {"x", 1};
    assert_int_equal(vkt__file_write_atomic(p, &junk, 1), VKT_OK);
    assert_int_equal(save(9, &L, 4.0f), VKT_ERR_IO);
    assert_non_null(strstr(vkt_last_error(), "step-000009"));
    idx = open_ok(dir);
    assert_int_equal(idx->step, 7);
    expect_contents(dir, idx, &L, 3.0f);
    vkt__ckpt_index_free(idx);
}

/* A shard that passes its checksum but disagrees with the index (another
 * save's file with its record patched in) is refused by load_flat. */
static void shard_disagrees_with_index(void **state)
{
    fresh();
    layout L;
    build_layout(&L, 4, 2, 4);
    vkt_ckpt_range shifted[3];
    memcpy(shifted, L.ranges[1], sizeof shifted);
    shifted[0].offset += 1;
    float *zeros = calloc(64, sizeof(float));
    const float *d[NK] = {zeros, zeros, zeros};
    vkt_ckpt_filerec rec;
    assert_int_equal(vkt__ckpt_begin(run, 10), VKT_OK);
    assert_int_equal(vkt__ckpt_write_shard(run, 10, 1, 4, 2, shifted, 3, kinds, d, NK, &rec),
                     VKT_OK);
    free(zeros);
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/step-000010.partial/%s", run, rec.name);
    snprintf(b, sizeof b, "%s/step-000010/%s", run, rec.name);
    assert_int_equal(rename(a, b), 0);
    snprintf(a, sizeof a, "%s/step-000010/index.json", run);
    json_t *root = json_load_file(a, 0, NULL), *f = json_array_get(
        json_object_get(json_array_get(json_object_get(root, "ranks"), 1), "files"), 0);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)rec.xxh64);
    json_object_set_new(f, "bytes", json_integer((json_int_t)rec.bytes));
    json_object_set_new(f, "xxh64", json_string(hex));
    json_dump_file(root, a, 0);
    json_decref(root);
    char dir[4096];
    vkt_ckpt_index *idx = open_ok(dir); /* sizes and checksums agree */
    float *out = malloc(L.flat_len * sizeof(float));
    assert_int_equal(vkt__ckpt_load_flat(dir, idx, "exp_avg", out), VKT_ERR_CORRUPT);
    assert_non_null(strstr(vkt_last_error(), "rank 1's shard"));
    assert_non_null(strstr(vkt_last_error(), "'ranges' metadata differs from the index"));
    free(out);
    vkt__ckpt_index_free(idx);
}

/* Allocation failures while reading and checking an index: NOMEM or
 * success, never a crash (the sanitizer build checks for leaks). */
static int fail_at, calls;
static void *fa_alloc(void *u, size_t n) { return ++calls == fail_at ? NULL : malloc(n); }
static void *fa_realloc(void *u, void *p, size_t n)
{
    return ++calls == fail_at ? NULL : realloc(p, n);
}
static void fa_free(void *u, void *p) { free(p); }

static void allocation_failures(void **state)
{
    fresh();
    vkt_allocator a = {fa_alloc, fa_realloc, fa_free, NULL};
    int nomem = 0, ok = 0;
    for (fail_at = 1; fail_at < 40; fail_at++) {
        calls = 0;
        char dir[4096];
        vkt_ckpt_index *idx = NULL;
        vkt_set_allocator(&a);
        vkt_status st = vkt__ckpt_open(run, dir, sizeof dir, &idx);
        float *out = st == VKT_OK ? malloc(idx->flat_length * sizeof(float)) : NULL;
        if (st == VKT_OK) st = vkt__ckpt_load_flat(dir, idx, "exp_avg_sq", out);
        vkt__ckpt_index_free(idx);
        vkt_set_allocator(NULL);
        free(out);
        assert_true(st == VKT_OK || st == VKT_ERR_NOMEM);
        nomem += st == VKT_ERR_NOMEM;
        ok += st == VKT_OK;
    }
    assert_true(nomem > 3 && ok > 0);
}

/* ------------------------------------------------------------------------ */
/* The vktrain command                                                       */

static char out[1 << 16], err[1 << 16];

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

static int cli(const char *fmt, ...)
{
    char args[1024], cmd[2048], po[128], pe[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(po, sizeof po, "%s/out", tmp);
    snprintf(pe, sizeof pe, "%s/err", tmp);
    snprintf(cmd, sizeof cmd, "'%s' %s >%s 2>%s", exe, args, po, pe);
    int st = system(cmd);
    slurp(po, out, sizeof out);
    slurp(pe, err, sizeof err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void cli_consolidate_and_info(void **state)
{
    layout L;
    build_layout(&L, 4, 2, 4);
    assert_int_equal(save(10, &L, 0.5f), VKT_OK);
    char o[256];
    snprintf(o, sizeof o, "%s/full.safetensors", tmp);
    assert_int_equal(cli("ckpt consolidate %s %s", run, o), 0);
    assert_non_null(strstr(out, "6 fp32 tensors"));
    vkt_st_file *f = NULL;
    assert_int_equal(vkt__st_open(o, &f), VKT_OK);
    assert_int_equal(vkt__st_count(f), NP);
    float *want = known_flat(&L, 0, 0.5f);
    for (size_t i = 0; i < NP; i++) {
        const vkt_st_tensor *t = vkt__st_find(f, model[i].name);
        assert_non_null(t);
        assert_int_equal(t->dtype, VKT_ST_F32);
        assert_int_equal(t->ndim, model[i].ndim);
        for (uint32_t d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], model[i].shape[d]);
        assert_memory_equal(t->data, want + L.params[i].offset, L.params[i].numel * sizeof(float));
    }
    assert_string_equal(vkt__st_meta(f, "format"), "pt");
    vkt__st_close(f);
    free(want);
    /* The step directory works as well as the run directory. */
    assert_int_equal(cli("ckpt consolidate %s/step-000010 %s", run, o), 0);

    assert_int_equal(cli("ckpt info %s --json", run), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "step")), 10);
    assert_int_equal(json_integer_value(json_object_get(j, "world_size")), 4);
    assert_int_equal(json_integer_value(json_object_get(j, "zero_stage")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "params")), NP);
    assert_int_equal(json_array_size(json_object_get(j, "files")), 5);
    assert_true(json_is_true(json_object_get(j, "verified")));
    json_decref(j);
    assert_int_equal(cli("ckpt info %s", run), 0);
    assert_non_null(strstr(out, "world size 4, ZeRO stage 2"));
    assert_non_null(strstr(out, "shard       rank 3  "));
    assert_non_null(strstr(out, "checksums   verified"));

    flip_byte("rank_00003.safetensors", -1);
    assert_int_equal(cli("ckpt info %s --json", run), 1);
    j = json_loads(out, 0, NULL);
    assert_true(json_is_false(json_object_get(j, "verified")));
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "rank 3's shard"));
    json_decref(j);
    assert_int_equal(cli("ckpt consolidate %s %s", run, o), 1);
    assert_non_null(strstr(err, "fails its checksum"));
    assert_int_equal(cli("ckpt info %s/nothing", tmp), 1);
    assert_non_null(strstr(err, "neither a checkpoint step directory"));
    assert_int_equal(cli("ckpt frob x"), 2);
    assert_int_equal(cli("ckpt --help"), 0);
    assert_non_null(strstr(out, "usage: vktrain ckpt"));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-vktrain\n", argv[0]);
        return 2;
    }
    exe = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(reshard, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_files, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_index, setup, teardown),
        cmocka_unit_test_setup_teardown(other_model, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_keeps_previous, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_in_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(resave_and_refused_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(shard_disagrees_with_index, setup, teardown),
        cmocka_unit_test_setup_teardown(allocation_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(cli_consolidate_and_info, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
