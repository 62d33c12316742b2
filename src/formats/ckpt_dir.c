/* Checkpoint directories: staging, shard files, atomic commit, verification,
 * assembling and re-laying-out flat state (see ckpt_index.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/core_int.h"
#include "formats/ckpt_int.h"
#include "formats/file.h"

#define PATH_CAP 4096

void vkt__ckpt_step_name(uint64_t step, char *out, size_t cap)
{
    snprintf(out, cap, "step-%06" PRIu64, step);
}

static void partial_dir(const char *run_dir, uint64_t step, char *out, size_t cap)
{
    char name[32];
    vkt__ckpt_step_name(step, name, sizeof name);
    snprintf(out, cap, "%s/%s.partial", run_dir, name);
}

/* Remove a directory that holds only files (ours never nest); a missing
 * one is fine. */
static vkt_status remove_flat_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d && errno == ENOENT) return VKT_OK;
    VKT_FAIL_IF(!d, VKT_ERR_IO, "cannot open directory %s: %s", path, strerror(errno));
    char p[PATH_CAP];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        if (unlink(p) != 0) {
            int err = errno;
            closedir(d);
            return VKT_ERROR(VKT_ERR_IO, "cannot remove %s: %s", p, strerror(err));
        }
    }
    closedir(d);
    VKT_FAIL_IF(rmdir(path) != 0, VKT_ERR_IO, "cannot remove directory %s: %s", path,
                strerror(errno));
    return VKT_OK;
}

static vkt_status mkdir_p(const char *path)
{
    char p[PATH_CAP];
    VKT_FAIL_IF(strlen(path) >= sizeof p, VKT_ERR_INVALID_ARG, "path too long: %s", path);
    strcpy(p, path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return VKT_ERROR(VKT_ERR_IO, "cannot create directory %s: %s", p, strerror(errno));
        if (!c) break;
        *s = c;
    }
    return VKT_OK;
}

vkt_status vkt__ckpt_begin(const char *run_dir, uint64_t step)
{
    char part[PATH_CAP];
    partial_dir(run_dir, step, part, sizeof part);
    VKT_CHECK(mkdir_p(run_dir));
    VKT_CHECK(remove_flat_dir(part)); /* what a crashed save left */
    VKT_FAIL_IF(mkdir(part, 0755) != 0, VKT_ERR_IO, "cannot create %s: %s", part, strerror(errno));
    return VKT_OK;
}

static void fill_rec(vkt_ckpt_filerec *rec, const char *name, const char *role,
                     const vkt_st_written *w)
{
    memset(rec, 0, sizeof *rec);
    snprintf(rec->name, sizeof rec->name, "%s", name);
    snprintf(rec->role, sizeof rec->role, "%s", role);
    rec->bytes = w->bytes;
    rec->xxh64 = w->xxh64;
}

vkt_status vkt__ckpt_write_shard(const char *run_dir, uint64_t step, uint32_t rank,
                                 uint32_t world, uint32_t stage, const vkt_ckpt_range *ranges,
                                 size_t nranges, const char *const *kinds,
                                 const float *const *data, size_t nkinds, vkt_ckpt_filerec *rec)
{
    VKT_FAIL_IF(rank >= world || stage > 3 || nkinds < 1 || nkinds > VKT_CKPT_MAX_STATES + 1 ||
                (nranges && !ranges), VKT_ERR_INVALID_ARG, "checkpoint shard of rank %u: bad "
                "rank/world (%u/%u), stage %u or %zu state kinds", rank, rank, world, stage,
                nkinds);
    uint64_t total = 0;
    json_t *rj = json_array();
    for (size_t j = 0; j < nranges; j++) {
        total += ranges[j].count;
        json_array_append_new(rj, json_pack("[I,I]", (json_int_t)ranges[j].offset,
                                            (json_int_t)ranges[j].count));
    }
    char *rtext = json_dumps(rj, JSON_COMPACT);
    json_decref(rj);
    VKT_FAIL_IF(!rtext, VKT_ERR_NOMEM, "no memory for rank %u's shard metadata", rank);
    char srank[16], sworld[16], sstage[16], name[64], part[PATH_CAP], path[PATH_CAP];
    snprintf(srank, sizeof srank, "%u", rank);
    snprintf(sworld, sizeof sworld, "%u", world);
    snprintf(sstage, sizeof sstage, "%u", stage);
    const vkt_st_meta meta[] = {{"format", "pt"},          {"vktrain", "zero-shard"},
                                {"rank", srank},           {"world_size", sworld},
                                {"zero_stage", sstage},    {"ranges", rtext}};
    vkt_st_tensor t[VKT_CKPT_MAX_STATES + 1];
    memset(t, 0, sizeof t);
    for (size_t k = 0; k < nkinds; k++)
        t[k] = (vkt_st_tensor){.name = kinds[k], .dtype = VKT_ST_F32, .ndim = 1,
                               .shape = {total}, .data = data[k]};
    snprintf(name, sizeof name, "rank_%05u.safetensors", rank);
    partial_dir(run_dir, step, part, sizeof part);
    snprintf(path, sizeof path, "%s/%s", part, name);
    vkt_st_written w;
    vkt_status st = vkt__st_write(path, t, nkinds, meta, sizeof meta / sizeof meta[0], &w);
    free(rtext);
    VKT_CHECK(st);
    vkt__fault_point("save"); /* test-only: VKT_INJECT_FAULT=kill_save:N dies here */
    fill_rec(rec, name, "shard", &w);
    return VKT_OK;
}

vkt_status vkt__ckpt_write_model(const char *run_dir, uint64_t step, const vkt_st_tensor *tensors,
                                 size_t n, vkt_ckpt_filerec *rec)
{
    char part[PATH_CAP], path[PATH_CAP];
    partial_dir(run_dir, step, part, sizeof part);
    snprintf(path, sizeof path, "%s/model.safetensors", part);
    const vkt_st_meta meta[] = {{"format", "pt"}};
    vkt_st_written w;
    VKT_CHECK(vkt__st_write(path, tensors, n, meta, 1, &w));
    fill_rec(rec, "model.safetensors", "model", &w);
    return VKT_OK;
}

/* Move the finished partial directory to its final name. An existing step
 * directory (the same step saved again) is swapped out in one atomic
 * exchange, so RUN/latest never names a half-replaced directory. */
static vkt_status publish(const char *part, const char *final)
{
    if (rename(part, final) == 0) return VKT_OK;
    int e = errno;
    VKT_FAIL_IF(e != ENOTEMPTY && e != EEXIST, VKT_ERR_IO, "cannot rename %s to %s: %s", part,
                final, strerror(e));
    VKT_FAIL_IF(renameat2(AT_FDCWD, part, AT_FDCWD, final, RENAME_EXCHANGE) != 0, VKT_ERR_IO,
                "cannot replace the existing %s: %s; remove it or save another step", final,
                strerror(errno));
    return remove_flat_dir(part); /* now the old contents */
}

vkt_status vkt__ckpt_commit(const char *run_dir, const vkt_ckpt_index *idx)
{
    VKT_CHECK(vkt__ckpt_check_index(idx, VKT_ERR_INVALID_ARG, "checkpoint index"));
    char part[PATH_CAP], path[PATH_CAP], name[32];
    partial_dir(run_dir, idx->step, part, sizeof part);
    for (uint32_t r = 0; r < idx->world_size; r++)
        for (size_t j = 0; j < idx->ranks[r].nfiles; j++) {
            const vkt_ckpt_filerec *f = &idx->ranks[r].files[j];
            struct stat sb;
            snprintf(path, sizeof path, "%s/%s", part, f->name);
            VKT_FAIL_IF(stat(path, &sb) != 0, VKT_ERR_IO, "cannot commit the checkpoint: rank "
                        "%u's file %s is not there (%s)", r, path, strerror(errno));
            VKT_FAIL_IF((uint64_t)sb.st_size != f->bytes, VKT_ERR_IO, "cannot commit the "
                        "checkpoint: rank %u's file %s has %lld bytes, its record says %" PRIu64,
                        r, path, (long long)sb.st_size, f->bytes);
        }
    char *text = NULL;
    VKT_CHECK(vkt__ckpt_index_format(idx, &text));
    snprintf(path, sizeof path, "%s/index.json", part);
    vkt_file_part p = {text, strlen(text)};
    vkt_status st = vkt__file_write_atomic(path, &p, 1);
    free(text);
    VKT_CHECK(st);
    vkt__ckpt_step_name(idx->step, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", run_dir, name);
    VKT_CHECK(publish(part, path));
    VKT_CHECK(vkt__file_sync_dir(path)); /* the rename, in run_dir */
    char line[40];
    snprintf(line, sizeof line, "%s\n", name);
    snprintf(path, sizeof path, "%s/latest", run_dir);
    vkt_file_part l = {line, strlen(line)};
    return vkt__file_write_atomic(path, &l, 1);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                   */

static bool has_index(const char *dir)
{
    char p[PATH_CAP];
    snprintf(p, sizeof p, "%s/index.json", dir);
    return access(p, F_OK) == 0;
}

vkt_status vkt__ckpt_resolve(const char *path, char *step_dir, size_t cap)
{
    VKT_FAIL_IF(strlen(path) + 80 >= cap || strlen(path) + 80 >= PATH_CAP, VKT_ERR_INVALID_ARG,
                "path too long: %s", path);
    if (has_index(path)) {
        snprintf(step_dir, cap, "%s", path);
        return VKT_OK;
    }
    char lp[PATH_CAP];
    snprintf(lp, sizeof lp, "%s/latest", path);
    VKT_FAIL_IF(access(lp, F_OK) != 0, VKT_ERR_IO, "%s is neither a checkpoint step directory "
                "(no index.json) nor a run directory (no 'latest' file)", path);
    void *text = NULL;
    size_t n = 0;
    VKT_CHECK(vkt__file_read(lp, 256, &text, &n));
    char *s = text;
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r')) s[--n] = '\0';
    bool ok = n > 0 && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
    snprintf(step_dir, cap, "%s/%s", path, ok ? s : "");
    vkt_status st = VKT_OK;
    if (!ok)
        st = VKT_ERROR(VKT_ERR_CORRUPT, "%s does not hold a step directory name", lp);
    else if (!has_index(step_dir))
        st = VKT_ERROR(VKT_ERR_CORRUPT, "%s names %s, which has no index.json", lp, step_dir);
    vkt_free(text);
    return st;
}

static void describe(char *buf, size_t cap, uint32_t rank, const vkt_ckpt_filerec *f,
                     const char *dir)
{
    snprintf(buf, cap, "rank %u's %s %s/%s", rank,
             strcmp(f->role, "shard") ? "model file" : "shard", dir, f->name);
}

static vkt_status verify_file(const char *dir, uint32_t rank, const vkt_ckpt_filerec *f,
                              void *buf, size_t cap)
{
    char what[PATH_CAP + 64], path[PATH_CAP];
    describe(what, sizeof what, rank, f, dir);
    snprintf(path, sizeof path, "%s/%s", dir, f->name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    VKT_FAIL_IF(fd < 0 && errno == ENOENT, VKT_ERR_CORRUPT, "%s is missing", what);
    VKT_FAIL_IF(fd < 0, VKT_ERR_IO, "cannot open %s: %s", what, strerror(errno));
    struct stat sb;
    vkt_status st = VKT_OK;
    if (fstat(fd, &sb) != 0)
        st = VKT_ERROR(VKT_ERR_IO, "cannot stat %s: %s", what, strerror(errno));
    else if ((uint64_t)sb.st_size != f->bytes)
        st = VKT_ERROR(VKT_ERR_CORRUPT, "%s %s: it has %lld bytes, the index records %" PRIu64,
                       what, (uint64_t)sb.st_size < f->bytes ? "is truncated" : "has grown",
                       (long long)sb.st_size, f->bytes);
    XXH64_state_t *hs = st == VKT_OK ? XXH64_createState() : NULL;
    if (st == VKT_OK && !hs) st = VKT_ERROR(VKT_ERR_NOMEM, "no memory for a hash state");
    if (hs) XXH64_reset(hs, 0);
    while (st == VKT_OK) {
        ssize_t r = read(fd, buf, cap);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) st = VKT_ERROR(VKT_ERR_IO, "cannot read %s: %s", what, strerror(errno));
        if (r <= 0) break;
        XXH64_update(hs, buf, (size_t)r);
    }
    if (st == VKT_OK && XXH64_digest(hs) != f->xxh64)
        st = VKT_ERROR(VKT_ERR_CORRUPT, "%s fails its checksum (xxh64 %016" PRIx64 ", the index "
                       "records %016" PRIx64 "): the file is corrupt", what, XXH64_digest(hs),
                       f->xxh64);
    XXH64_freeState(hs);
    close(fd);
    return st;
}

vkt_status vkt__ckpt_verify(const char *step_dir, const vkt_ckpt_index *idx)
{
    size_t cap = 4u << 20;
    void *buf = vkt_malloc(cap);
    VKT_FAIL_IF(!buf, VKT_ERR_NOMEM, "no memory to verify %s", step_dir);
    vkt_status st = VKT_OK;
    for (uint32_t r = 0; r < idx->world_size && st == VKT_OK; r++)
        for (size_t j = 0; j < idx->ranks[r].nfiles && st == VKT_OK; j++)
            st = verify_file(step_dir, r, &idx->ranks[r].files[j], buf, cap);
    vkt_free(buf);
    return st;
}

vkt_status vkt__ckpt_open(const char *path, char *step_dir, size_t cap, vkt_ckpt_index **out)
{
    *out = NULL;
    VKT_CHECK(vkt__ckpt_resolve(path, step_dir, cap));
    vkt_ckpt_index *idx = NULL;
    VKT_CHECK(vkt__ckpt_index_read(step_dir, &idx));
    vkt_status st = vkt__ckpt_verify(step_dir, idx);
    if (st != VKT_OK) {
        vkt__ckpt_index_free(idx);
        return st;
    }
    *out = idx;
    return VKT_OK;
}
