/* vktrain ckpt: inspect checkpoints and consolidate them to one fp32 file. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core_int.h"
#include "formats/ckpt_index.h"

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: vktrain ckpt info DIR [--json]\n"
               "       vktrain ckpt consolidate DIR OUT.safetensors\n\n"
               "DIR is a checkpoint step directory (with index.json) or a run directory,\n"
               "whose 'latest' file names the step directory.\n\n"
               "  info         step, world size, ZeRO stage, parameters and files, and\n"
               "               whether every file's size and xxh64 checksum verify\n"
               "               (exit code 1 when they do not)\n"
               "  --json       the same as one JSON object\n"
               "  consolidate  gather every rank's fp32 master weights into one\n"
               "               safetensors file with each parameter by name and shape\n"
               "               (like DeepSpeed's zero_to_fp32.py), whatever world size\n"
               "               and stage wrote the checkpoint\n");
    return code;
}

static uint64_t total_numel(const vkt_ckpt_index *x)
{
    uint64_t n = 0;
    for (size_t i = 0; i < x->nparams; i++) n += x->params[i].numel;
    return n;
}

static json_t *info_json(const char *dir, const vkt_ckpt_index *x, vkt_status vst)
{
    json_t *states = json_array(), *files = json_array();
    for (size_t i = 0; i < x->nstates; i++)
        json_array_append_new(states, json_string(x->states[i]));
    for (uint32_t r = 0; r < x->world_size; r++)
        for (size_t j = 0; j < x->ranks[r].nfiles; j++) {
            const vkt_ckpt_filerec *f = &x->ranks[r].files[j];
            char hex[17];
            snprintf(hex, sizeof hex, "%016" PRIx64, f->xxh64);
            json_array_append_new(files, json_pack("{s:i, s:s, s:s, s:I, s:s}", "rank", (int)r,
                                                   "name", f->name, "role", f->role, "bytes",
                                                   (json_int_t)f->bytes, "xxh64", hex));
        }
    json_t *o = json_pack("{s:s, s:I, s:I, s:i, s:i, s:s, s:o, s:I, s:I, s:I, s:I, s:o, s:b}",
                          "step_dir", dir, "step", (json_int_t)x->step, "samples_seen",
                          (json_int_t)x->samples_seen, "world_size", (int)x->world_size,
                          "zero_stage", (int)x->zero_stage, "dtype", vkt_dtype_name(x->dtype),
                          "optimizer_states", states, "params", (json_int_t)x->nparams, "numel",
                          (json_int_t)total_numel(x), "flat_length", (json_int_t)x->flat_length,
                          "alignment", (json_int_t)x->alignment, "files", files, "verified",
                          vst == VKT_OK);
    json_object_set_new(o, "error", vst == VKT_OK ? json_null() : json_string(vkt_last_error()));
    return o;
}

static void info_text(const char *dir, const vkt_ckpt_index *x, vkt_status vst)
{
    char b[32];
    printf("checkpoint  %s\n", dir);
    printf("step        %" PRIu64 " (%" PRIu64 " samples seen)\n", x->step, x->samples_seen);
    printf("layout      world size %u, ZeRO stage %u, dtype %s, optimizer states:", x->world_size,
           x->zero_stage, vkt_dtype_name(x->dtype));
    for (size_t i = 0; i < x->nstates; i++) printf(" %s", x->states[i]);
    printf("%s\n", x->nstates ? "" : " none");
    printf("params      %zu tensors, %" PRIu64 " elements (flat buffer %" PRIu64
           ", alignment %" PRIu64 ")\n", x->nparams, total_numel(x), x->flat_length, x->alignment);
    for (uint32_t r = 0; r < x->world_size; r++) {
        uint64_t n = 0;
        for (size_t k = 0; k < x->ranks[r].nranges; k++) n += x->ranks[r].ranges[k].count;
        printf("shard       rank %u  %" PRIu64 " elements in %zu range%s\n", r, n,
               x->ranks[r].nranges, x->ranks[r].nranges == 1 ? "" : "s");
    }
    for (uint32_t r = 0; r < x->world_size; r++)
        for (size_t j = 0; j < x->ranks[r].nfiles; j++) {
            const vkt_ckpt_filerec *f = &x->ranks[r].files[j];
            printf("file        rank %u  %-24s %-5s %10s  xxh64 %016" PRIx64 "\n", r, f->name,
                   f->role, vkt__fmt_bytes(b, sizeof b, f->bytes), f->xxh64);
        }
    if (vst == VKT_OK) printf("checksums   verified (every file's size and xxh64 match)\n");
    else printf("checksums   FAILED: %s\n", vkt_last_error());
}

static int ckpt_info(const char *path, bool as_json)
{
    char dir[4096];
    vkt_ckpt_index *x = NULL;
    vkt_status st = vkt__ckpt_resolve(path, dir, sizeof dir);
    if (st == VKT_OK) st = vkt__ckpt_index_read(dir, &x);
    if (st != VKT_OK) return cli_fail(st, "ckpt info");
    vkt_status vst = vkt__ckpt_verify(dir, x);
    if (as_json) {
        json_t *o = info_json(dir, x, vst);
        json_dumpf(o, stdout, JSON_INDENT(2));
        printf("\n");
        json_decref(o);
    } else {
        info_text(dir, x, vst);
    }
    vkt__ckpt_index_free(x);
    return vst == VKT_OK ? 0 : 1;
}

static int ckpt_consolidate(const char *path, const char *out)
{
    char dir[4096], step[32], src[64];
    vkt_ckpt_index *x = NULL;
    vkt_status st = vkt__ckpt_open(path, dir, sizeof dir, &x);
    if (st != VKT_OK) return cli_fail(st, "ckpt consolidate");
    float *flat = vkt_malloc((x->flat_length ? x->flat_length : 1) * sizeof(float));
    vkt_st_tensor *t = vkt_calloc(x->nparams + 1, sizeof *t);
    if (!flat || !t) st = VKT_ERROR(VKT_ERR_NOMEM, "no memory for %" PRIu64 " floats",
                                    x->flat_length);
    if (st == VKT_OK) st = vkt__ckpt_load_flat(dir, x, VKT_CKPT_MASTER, flat);
    for (size_t i = 0; st == VKT_OK && i < x->nparams; i++) {
        const vkt_ckpt_param *p = &x->params[i];
        t[i] = (vkt_st_tensor){.name = p->name, .dtype = VKT_ST_F32, .ndim = p->ndim,
                               .data = flat + p->offset};
        memcpy(t[i].shape, p->shape, sizeof p->shape);
    }
    snprintf(step, sizeof step, "%" PRIu64, x->step);
    snprintf(src, sizeof src, "world %u, ZeRO stage %u", x->world_size, x->zero_stage);
    const vkt_st_meta meta[] = {{"format", "pt"}, {"vktrain_step", step}, {"vktrain_source", src}};
    vkt_st_written w = {0};
    if (st == VKT_OK) st = vkt__st_write(out, t, x->nparams, meta, 3, &w);
    if (st == VKT_OK) {
        char b[32];
        printf("wrote %s: %zu fp32 tensors, %" PRIu64 " elements, %s (step %" PRIu64
               ", saved by %s)\n", out, x->nparams, total_numel(x),
               vkt__fmt_bytes(b, sizeof b, w.bytes), x->step, src);
    }
    vkt_free(t);
    vkt_free(flat);
    vkt__ckpt_index_free(x);
    return st == VKT_OK ? 0 : cli_fail(st, "ckpt consolidate");
}

int cmd_ckpt(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool as_json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'j') as_json = true;
        else if (c == 'h') return usage(stdout, 0);
        else return usage(stderr, 2);
    }
    int n = argc - optind;
    char **a = argv + optind;
    if (n < 1) return cli_usage_error("ckpt", "missing subcommand (info or consolidate)");
    if (!strcmp(a[0], "info")) {
        if (n != 2) return cli_usage_error("ckpt", "info takes one directory");
        return ckpt_info(a[1], as_json);
    }
    if (!strcmp(a[0], "consolidate")) {
        if (n != 3 || as_json)
            return cli_usage_error("ckpt", "consolidate takes DIR and OUT.safetensors");
        return ckpt_consolidate(a[1], a[2]);
    }
    return cli_usage_error("ckpt", "unknown subcommand '%s' (info or consolidate)", a[0]);
}
