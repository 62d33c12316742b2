/* vktrain train: train a model on a data set, one process per rank.
 *
 *   vktrain train [--model mlp|gpt] [--data PATH] [--config ds.json] [options]
 *
 * Ranks find each other from the environment (torchrun style RANK /
 * WORLD_SIZE / MASTER_ADDR / MASTER_PORT as `vktrain launch` sets them,
 * SLURM's srun, Open MPI's mpirun); without any of it, one process. The
 * configuration is DeepSpeed's JSON (--config) or, without one, built from
 * --batch, --lr, --zero and --dtype. Rank 0 prints progress and a summary;
 * --metrics writes JSON lines; --ckpt-dir saves checkpoints (and a
 * model.json that `vktrain sample` reads). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/train.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vktrain train [--model mlp|gpt] [--data PATH] [--config FILE] [options]\n\n"
            "Trains a model with every rank of the job (see 'vktrain launch'; under SLURM's\n"
            "srun, Open MPI's mpirun or with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT set no\n"
            "launcher is needed; with none of them, one process).\n\n"
            "Model and data:\n"
            "  --model mlp|gpt      mlp: classifier on IDX images (default);\n"
            "                       gpt: byte-level language model on text or llm.c .bin\n"
            "  --data PATH          mlp: directory of train-/t10k- IDX files (raw or .gz),\n"
            "                       default /usr/share/datasets/fashion-mnist;\n"
            "                       gpt: a text file (default data/kjv.txt) or a .bin file\n"
            "  --hidden W,W,...     mlp hidden widths (default 1024,1024)\n"
            "  --layers N --heads N --width N --context N   gpt shape (default 4 4 256 128)\n"
            "  --val-fraction F     gpt: the end of the file held out (default 0.1)\n"
            "  --dropout P          dropout probability in [0, 1) (default 0: none); off\n"
            "                       in evaluation and in 'vktrain sample'\n"
            "Optimisation (without --config):\n"
            "  --config FILE        DeepSpeed JSON config (batch, optimizer, scheduler,\n"
            "                       fp16/bf16, ZeRO, clipping, vktrain.*); overrides:\n"
            "  --batch N            micro-batch per rank (default mlp 128, gpt 16)\n"
            "  --lr X               AdamW learning rate (default 1e-3)\n"
            "  --zero N             ZeRO stage 0-3 (default 0: DDP)\n"
            "  --dtype f32|f16|bf16 compute dtype (master weights stay fp32; default f32)\n"
            "Length and evaluation:\n"
            "  --epochs N           at most N epochs (default 1)\n"
            "  --steps N            at most N updates\n"
            "  --eval-every N       evaluate every N updates (default: each epoch, and at the end)\n"
            "  --eval-batches N     gpt: validation micro-batches per rank (default 20; 0 all)\n"
            "  --target-accuracy P  mlp: stop once the test accuracy reaches P %%\n"
            "Checkpoints and output:\n"
            "  --ckpt-dir DIR       save checkpoints there (atomic; DIR/latest)\n"
            "  --save-every N       save every N updates (default: only at the end)\n"
            "  --resume             continue from DIR/latest when there is one\n"
            "  --metrics PATH       JSON lines per update; '{rank}' in PATH: one file per rank\n"
            "  --plot FILE.png      loss curves (needs gnuplot)\n"
            "  --print-every N      updates between progress lines (default: total/50)\n"
            "  --device SEL         Vulkan device (index, name or UUID; default: the\n"
            "                       config's vktrain.devices, $VKT_DEVICE, LOCAL_RANK's)\n"
            "  --seed N             data order and initial weights (default 1)\n");
}

enum { O_HIDDEN = 256, O_LAYERS, O_HEADS, O_WIDTH, O_CONTEXT, O_VALF, O_BATCH, O_LR, O_ZERO,
       O_DTYPE, O_EPOCHS, O_STEPS, O_EVAL, O_EVALB, O_TARGET, O_CKPT, O_SAVE, O_RESUME,
       O_METRICS, O_PLOT, O_PRINT, O_DEVICE, O_SEED, O_MODEL, O_DATA, O_CONFIG, O_DROPOUT };

static const struct option longopts[] = {
    {"model", 1, 0, O_MODEL}, {"data", 1, 0, O_DATA}, {"config", 1, 0, O_CONFIG},
    {"hidden", 1, 0, O_HIDDEN}, {"layers", 1, 0, O_LAYERS}, {"heads", 1, 0, O_HEADS},
    {"width", 1, 0, O_WIDTH}, {"context", 1, 0, O_CONTEXT}, {"val-fraction", 1, 0, O_VALF},
    {"batch", 1, 0, O_BATCH}, {"lr", 1, 0, O_LR}, {"zero", 1, 0, O_ZERO},
    {"dtype", 1, 0, O_DTYPE}, {"epochs", 1, 0, O_EPOCHS}, {"steps", 1, 0, O_STEPS},
    {"eval-every", 1, 0, O_EVAL}, {"eval-batches", 1, 0, O_EVALB},
    {"target-accuracy", 1, 0, O_TARGET}, {"ckpt-dir", 1, 0, O_CKPT},
    {"save-every", 1, 0, O_SAVE}, {"resume", 0, 0, O_RESUME}, {"metrics", 1, 0, O_METRICS},
    {"plot", 1, 0, O_PLOT}, {"print-every", 1, 0, O_PRINT}, {"device", 1, 0, O_DEVICE},
    {"seed", 1, 0, O_SEED}, {"dropout", 1, 0, O_DROPOUT}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};

static int parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    return cli_parse_u64("train", opt, s, lo, hi, out);
}

static int parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi))
        return cli_usage_error("train", "--%s takes a number from %g to %g, not '%s'", opt, lo,
                               hi, s);
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, train_opts *o)
{
    *o = (train_opts){.model = "mlp", .hidden = "1024,1024", .layers = 4, .heads = 4,
                      .width = 256, .context = 128, .lr = 1e-3, .epochs = 1, .seed = 1,
                      .val_fraction = 0.1, .eval_batches = 20};
    uint64_t v;
    int c, rc = 0;
    bool set_by_flag = false; /* --batch, --lr, --zero or --dtype given */
    optind = 1;
    while (!rc && (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        const char *name = "";
        for (const struct option *p = longopts; p->name; p++)
            if (p->val == c) name = p->name;
        switch (c) {
        case 'h': usage(stdout); return -1;
        case O_MODEL: o->model = optarg; break;
        case O_DATA: o->data = optarg; break;
        case O_CONFIG: o->config = optarg; break;
        case O_HIDDEN: o->hidden = optarg; break;
        case O_LAYERS: rc = parse_u64(name, optarg, 1, 64, &v), o->layers = (uint32_t)v; break;
        case O_HEADS: rc = parse_u64(name, optarg, 1, 64, &v), o->heads = (uint32_t)v; break;
        case O_WIDTH: rc = parse_u64(name, optarg, 1, 8192, &v), o->width = (uint32_t)v; break;
        case O_CONTEXT: rc = parse_u64(name, optarg, 2, 8192, &v), o->context = (uint32_t)v; break;
        case O_VALF: rc = parse_double(name, optarg, 0.001, 0.9, &o->val_fraction); break;
        case O_BATCH:
            rc = parse_u64(name, optarg, 1, 1 << 20, &v), o->batch = (uint32_t)v, set_by_flag = true;
            break;
        case O_LR: rc = parse_double(name, optarg, 0, 10, &o->lr), set_by_flag = true; break;
        case O_ZERO:
            rc = parse_u64(name, optarg, 0, 3, &v), o->zero = (uint32_t)v, set_by_flag = true;
            break;
        case O_DTYPE: o->dtype = optarg, set_by_flag = true; break;
        case O_EPOCHS: rc = parse_u64(name, optarg, 1, 1 << 20, &v), o->epochs = (uint32_t)v; break;
        case O_STEPS: rc = parse_u64(name, optarg, 1, UINT64_MAX / 2, &o->steps); break;
        case O_EVAL: rc = parse_u64(name, optarg, 1, UINT64_MAX / 2, &o->eval_every); break;
        case O_EVALB: rc = parse_u64(name, optarg, 0, 1 << 30, &v), o->eval_batches = (uint32_t)v; break;
        case O_TARGET: rc = parse_double(name, optarg, 0, 100, &o->target); break;
        case O_CKPT: o->ckpt_dir = optarg; break;
        case O_SAVE: rc = parse_u64(name, optarg, 1, UINT64_MAX / 2, &o->save_every); break;
        case O_RESUME: o->resume = true; break;
        case O_METRICS: o->metrics = optarg; break;
        case O_PLOT: o->plot = optarg; break;
        case O_PRINT: rc = parse_u64(name, optarg, 1, UINT64_MAX / 2, &o->print_every); break;
        case O_DEVICE: o->device = optarg; break;
        case O_SEED: rc = parse_u64(name, optarg, 0, UINT64_MAX, &o->seed); break;
        case O_DROPOUT: rc = parse_double(name, optarg, 0, 0.99, &o->dropout); break;
        default: return cli_usage_error("train", "unknown option (see --help)");
        }
    }
    if (rc) return rc;
    if (optind < argc) return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    if (strcmp(o->model, "mlp") && strcmp(o->model, "gpt"))
        return cli_usage_error("train", "--model is mlp or gpt, not '%s'", o->model);
    if (o->dtype && strcmp(o->dtype, "f32") && strcmp(o->dtype, "f16") && strcmp(o->dtype, "bf16"))
        return cli_usage_error("train", "--dtype is f32, f16 or bf16, not '%s'", o->dtype);
    if (o->config && set_by_flag)
        return cli_usage_error("train", "--batch, --lr, --dtype and --zero set what --config "
                               "sets; put them in the config file instead");
    if (o->plot && strpbrk(o->plot, "'\"\n"))
        return cli_usage_error("train", "--plot: a file name without quotes or new lines, please");
    if (o->resume && !o->ckpt_dir) return cli_usage_error("train", "--resume needs --ckpt-dir");
    if (!o->batch) o->batch = !strcmp(o->model, "gpt") ? 16 : 128;
    return 0;
}

/* World size from the launcher's environment (torchrun style, srun,
 * mpirun), for resolving the batch identity before the communicator
 * exists; 0: no distributed environment at all. */
static int env_world(vkt_dist_env *env)
{
    vkt_status st = vkt_dist_env_detect(env);
    if (st != VKT_OK) return -cli_fail(st, "train: reading the launcher's environment");
    return strcmp(env->source, "none") ? env->world_size : 0;
}

static int load_config(train_job *j, int world)
{
    vkt_config_opts co = VKT_CONFIG_OPTS_INIT;
    co.world_size = (uint32_t)world;
    co.warn_stream = j->env.rank <= 0 ? stderr : NULL; /* rank 0 speaks */
    vkt_status st;
    if (j->o.config) {
        st = vkt_config_load(j->o.config, &co, &j->cfg);
    } else {
        const char *dt = j->o.dtype ? j->o.dtype : "f32";
        char json[1024];
        snprintf(json, sizeof json,
                 "{\"train_micro_batch_size_per_gpu\": %u, \"gradient_accumulation_steps\": 1,"
                 " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": %.17g}},"
                 " \"zero_optimization\": {\"stage\": %u}, \"bf16\": {\"enabled\": %s},"
                 " \"fp16\": {\"enabled\": %s}, \"steps_per_print\": 1000000000,"
                 " \"vktrain\": {\"seed\": %" PRIu64 "}}",
                 j->o.batch, j->o.lr, j->o.zero, strcmp(dt, "bf16") ? "false" : "true",
                 strcmp(dt, "f16") ? "false" : "true", j->o.seed);
        co.source_name = "the flags' config";
        st = vkt_config_parse(json, strlen(json), &co, &j->cfg);
    }
    return st == VKT_OK ? 0 : cli_fail(st, "train: config");
}

static int join_job(train_job *j)
{
    int world = env_world(&j->env);
    if (world < 0) return 1;
    if (load_config(j, world ? world : 1)) return 1;
    j->rank = 0, j->world = 1;
    if (!world) return 0;
    vkt_comm_opts co = VKT_COMM_OPTS_INIT;
    co.backend = (vkt_comm_backend)j->cfg->backend;
    co.comm_timeout_s = j->cfg->comm_timeout_s;
    co.allow_unauthenticated = j->cfg->allow_unauthenticated;
    vkt_status st = vkt_comm_create(&co, &j->comm);
    if (st != VKT_OK) return cli_fail(st, "train: joining the job");
    j->rank = vkt_comm_rank(j->comm), j->world = vkt_comm_size(j->comm);
    return 0;
}

/* --device, else the config's vktrain.devices[local rank], else
 * $VKT_DEVICE, else with several devices of the best kind the
 * local rank's of them (LOCAL_RANK, SLURM_LOCALID, OMPI_COMM_WORLD_LOCAL_RANK). */
static int open_device(train_job *j)
{
    bool has_local = j->env.local_rank >= 0 && strcmp(j->env.source, "none");
    int local = has_local ? j->env.local_rank : 0;
    const char *sel = j->o.device;
    if (!sel && j->cfg->device_count) sel = j->cfg->devices[(uint32_t)local % j->cfg->device_count];
    if (!sel) sel = getenv("VKT_DEVICE");
    char pick[16];
    vkt_device_caps *caps = NULL;
    uint32_t n = 0;
    if ((!sel || !*sel) && has_local && vkt_device_enumerate(&caps, &n) == VKT_OK && n > 1) {
        static const vkt_device_type order[] = {VKT_DEVICE_DISCRETE, VKT_DEVICE_INTEGRATED,
                                                VKT_DEVICE_VIRTUAL, VKT_DEVICE_CPU};
        for (size_t k = 0; k < 4 && !sel; k++) {
            uint32_t same = 0, want;
            for (uint32_t i = 0; i < n; i++) same += caps[i].type == order[k];
            if (!same) continue;
            want = (uint32_t)local % same;
            for (uint32_t i = 0; i < n; i++)
                if (caps[i].type == order[k] && want-- == 0) {
                    snprintf(pick, sizeof pick, "%u", i);
                    sel = pick;
                    break;
                }
        }
    }
    vkt_free(caps);
    return cli_open_device(sel, &j->dev);
}

static vkt_dtype config_dtype(const vkt_config *c)
{
    return c->bf16 ? VKT_DTYPE_BF16 : c->fp16 ? VKT_DTYPE_F16 : VKT_DTYPE_F32;
}

static int create_model(train_job *j)
{
    vkt_status st;
    if (j->gpt) {
        vkt_gpt_opts g = VKT_GPT_OPTS_INIT;
        g.vocab = j->ti.vocab, g.context = j->o.context, g.layers = j->o.layers;
        g.heads = j->o.heads, g.channels = j->o.width, g.dtype = config_dtype(j->cfg);
        g.seed = j->o.seed, g.dropout = (float)j->o.dropout;
        st = vkt_model_create_gpt(j->dev, &g, &j->model);
    } else {
        uint32_t sizes[18] = {j->ti.features}, n = 1;
        for (const char *p = j->o.hidden; *p;) {
            if (n == 17)
                return cli_usage_error("train", "--hidden takes at most 16 widths");
            char *end;
            unsigned long w = strtoul(p, &end, 10);
            if (end == p || w == 0 || w > 65536 || (*end && *end != ','))
                return cli_usage_error("train", "--hidden takes widths like 1024,1024, not '%s'",
                                       j->o.hidden);
            sizes[n++] = (uint32_t)w;
            p = *end ? end + 1 : end;
        }
        sizes[n] = j->ti.classes;
        vkt_mlp_opts m = VKT_MLP_OPTS_INIT;
        m.layers = n, m.sizes = sizes, m.dtype = config_dtype(j->cfg), m.seed = j->o.seed;
        m.dropout = (float)j->o.dropout;
        st = vkt_model_create_mlp(j->dev, &m, &j->model);
    }
    return st == VKT_OK ? 0 : cli_fail(st, "train: creating the model");
}

/* DIR/model.json: what `vktrain sample` needs to rebuild the model. */
static int write_model_json(train_job *j)
{
    if (j->rank != 0 || !j->o.ckpt_dir) return 0;
    if (mkdir(j->o.ckpt_dir, 0755) && errno != EEXIST)
        return cli_fail(VKT_ERROR(VKT_ERR_IO, "cannot create %s: %m", j->o.ckpt_dir), "train");
    /* dropout: a record of how it was trained; sampling never drops */
    json_t *o = j->gpt ? json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:f}", "model", "gpt", "vocab",
                                   (int)j->ti.vocab, "context", (int)j->o.context, "layers",
                                   (int)j->o.layers, "heads", (int)j->o.heads, "channels",
                                   (int)j->o.width, "dropout", j->o.dropout)
                       : json_pack("{s:s, s:i, s:s, s:i, s:f, s:f, s:f}", "model", "mlp",
                                   "inputs", (int)j->ti.features, "hidden", j->o.hidden,
                                   "classes", (int)j->ti.classes, "input_mean",
                                   (double)j->in_mean, "input_std", (double)j->in_std,
                                   "dropout", j->o.dropout);
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/model.json", j->o.ckpt_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = !o || json_dump_file(o, tmp, JSON_INDENT(2)) || rename(tmp, path);
    json_decref(o);
    return rc ? cli_fail(VKT_ERROR(VKT_ERR_IO, "cannot write %s: %m", path), "train") : 0;
}

static int start_engine(train_job *j)
{
    vkt_engine_opts eo = VKT_ENGINE_OPTS_INIT;
    eo.model = j->model, eo.comm = j->comm, eo.config = j->cfg;
    vkt_status st = vkt_engine_create(&eo, &j->e);
    if (st != VKT_OK) return cli_fail(st, "train: starting the engine");
    const vkt_config *ec = vkt_engine_config(j->e); /* with rank_batch "auto" resolved */
    j->micro = (uint32_t)(ec->rank_batch ? ec->rank_batch[j->rank]
                                         : ec->train_micro_batch_size_per_gpu);
    if (train_create_sampler(j)) return 1;
    uint64_t gas = j->cfg->gradient_accumulation_steps;
    j->updates_per_epoch = vkt_sampler_steps_per_epoch(j->sampler) / gas;
    if (!j->updates_per_epoch)
        return cli_fail(VKT_ERROR(VKT_ERR_INVALID_ARG,
                                  "one epoch (%" PRIu64 " samples) is shorter than one global "
                                  "batch (%" PRIu64 "): use a smaller batch or more data",
                                  j->ti.samples, j->cfg->train_batch_size), "train");
    j->total_updates = j->updates_per_epoch * j->o.epochs;
    if (j->o.steps && j->o.steps < j->total_updates) j->total_updates = j->o.steps;
    if (!j->o.eval_every) j->o.eval_every = j->updates_per_epoch;
    if (j->o.resume) {
        char latest[4200];
        snprintf(latest, sizeof latest, "%s/latest", j->o.ckpt_dir);
        /* Rank 0 decides, as the others may not see the same files (no
         * shared file system): loading is collective. */
        struct stat sb;
        int32_t have = stat(latest, &sb) == 0;
        if (j->comm) {
            st = vkt_comm_broadcast(j->comm, &have, 1, VKT_DTYPE_I32, 0);
            if (st != VKT_OK) return cli_fail(st, "train: resuming");
        }
        if (have) {
            st = vkt_engine_load(j->e, j->o.ckpt_dir);
            if (st == VKT_OK) st = vkt_sampler_seek(j->sampler, vkt_engine_global_samples(j->e));
            if (st != VKT_OK) {
                cli_fail(st, "train: resuming");
                if (st != VKT_ERR_REMOTE && st != VKT_ERR_TIMEOUT) /* not a peer's failure */
                    fprintf(stderr, "vktrain: train: %s/latest names a checkpoint this run cannot "
                            "load; write an earlier step-NNNNNN directory's name into it, or "
                            "start afresh without --resume or with another --ckpt-dir\n",
                            j->o.ckpt_dir);
                return 1;
            }
            if (j->rank == 0)
                printf("resumed from %s at update %" PRIu64 "\n", j->o.ckpt_dir,
                       vkt_engine_global_steps(j->e));
        } else if (j->rank == 0) {
            printf("nothing to resume in %s: starting fresh\n", j->o.ckpt_dir);
        }
    }
    return write_model_json(j);
}

static void print_start(const train_job *j)
{
    if (j->rank) return;
    const vkt_config *c = j->cfg;
    printf("vktrain train: %s, %" PRIu64 " parameters, %s, on %d rank%s (%s)\n",
           j->gpt ? "gpt" : "mlp", vkt_model_num_params(j->model),
           c->bf16 ? "bf16" : c->fp16 ? "fp16" : "fp32", j->world, j->world > 1 ? "s" : "",
           vkt_device_get_caps(j->dev)->name);
    printf("data: %" PRIu64 " training samples, %" PRIu64 " updates per epoch; global batch %"
           PRIu64 " (accumulation %" PRIu64 "), ZeRO stage %u; %" PRIu64 " updates planned\n",
           j->ti.samples, j->updates_per_epoch, c->train_batch_size,
           c->gradient_accumulation_steps, c->zero.stage, j->total_updates);
    fflush(stdout);
}

/* A failed update or save: the error, then which checkpoint survives it. */
static int fail_in_loop(const train_job *j, vkt_status st, const char *what)
{
    cli_fail(st, what);
    char path[4200], name[64] = "";
    if (!j->o.ckpt_dir) return 1;
    snprintf(path, sizeof path, "%s/latest", j->o.ckpt_dir);
    FILE *f = fopen(path, "r");
    if (f && fgets(name, sizeof name, f)) name[strcspn(name, "\n")] = '\0';
    if (f) fclose(f);
    if (*name)
        fprintf(stderr, "vktrain: train: the last complete checkpoint is %s/%s; --resume "
                "continues from it\n", j->o.ckpt_dir, name);
    return 1;
}

/* The training loop; returns 0 when done (cap or target reached). */
static int run(train_job *j)
{
    uint64_t gas = j->cfg->gradient_accumulation_steps, epoch = 0;
    bool reached = false;
    while (vkt_engine_global_steps(j->e) < j->total_updates && !reached) {
        float sum = 0;
        for (uint64_t k = 0; k < gas; k++) {
            vkt_batch b;
            float loss = 0;
            if (train_next_batch(j, &b, &epoch)) return 1;
            vkt__fault_point("forward"); /* test-only (VKT_INJECT_FAULT), see core/fault.c */
            vkt_status st = vkt_engine_forward(j->e, &b, &loss);
            if (st == VKT_OK) vkt__fault_point("backward");
            if (st == VKT_OK) st = vkt_engine_backward(j->e);
            if (st == VKT_OK) st = vkt_engine_step(j->e);
            if (st != VKT_OK) return fail_in_loop(j, st, "train");
            sum += loss;
        }
        if (train_report_update(j, epoch, sum / (float)gas)) return 1;
        uint64_t step = vkt_engine_global_steps(j->e);
        bool last = step >= j->total_updates;
        if (step % j->o.eval_every == 0 || last) {
            double l, a;
            if (train_evaluate(j, j->gpt ? j->o.eval_batches : 0, &l, &a)) return 1;
            train_report_eval(j, epoch, l, a);
            reached = !j->gpt && j->o.target > 0 && a >= j->o.target;
            if (reached && j->rank == 0)
                printf("reached the target accuracy %.1f%% at update %" PRIu64 "\n", j->o.target,
                       step);
        }
        if (j->o.ckpt_dir && ((j->o.save_every && step % j->o.save_every == 0) || last || reached)) {
            vkt_status st = vkt_engine_save(j->e, j->o.ckpt_dir);
            if (st != VKT_OK) return fail_in_loop(j, st, "train: saving a checkpoint");
            if (j->rank == 0) printf("saved %s/step-%06" PRIu64 "\n", j->o.ckpt_dir, step);
        }
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    train_job j = {0};
    /* Line by line even into a pipe: a rank that `vktrain launch` stops
     * (another rank failed) must not take its last lines ("saved ...") with it. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = parse_args(argc, argv, &j.o);
    if (rc) return rc < 0 ? 0 : rc;
    j.gpt = !strcmp(j.o.model, "gpt");
    rc = join_job(&j);
    if (!rc) rc = open_device(&j);
    if (!rc) rc = train_open_data(&j);
    if (!rc) rc = create_model(&j);
    if (!rc) rc = start_engine(&j);
    if (!rc) {
        if (j.gpt) j.bigram_loss = train_bigram_loss(&j);
        print_start(&j);
        rc = train_report_open(&j);
    }
    bool nothing = !rc && vkt_engine_global_steps(j.e) >= j.total_updates;
    if (nothing && j.rank == 0)
        printf("nothing to train: the checkpoint in %s is at update %" PRIu64 ", and the plan "
               "ends at update %" PRIu64 "; raise --epochs or --steps\n", j.o.ckpt_dir,
               vkt_engine_global_steps(j.e), j.total_updates);
    if (!rc && !nothing) rc = run(&j);
    if (!rc && !nothing) train_report_summary(&j);
    train_report_close(&j);
    train_close_data(&j);
    vkt_engine_destroy(j.e);
    vkt_model_destroy(j.model);
    vkt_config_destroy(j.cfg);
    vkt_device_destroy(j.dev);
    vkt_comm_destroy(j.comm);
    return rc;
}
