/* vktrain config check: validate a DeepSpeed-style config and print it
 * resolved (every default filled in, the batch identity solved). */
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: vktrain config check FILE [--world N] [--json]\n\n"
               "Validates a DeepSpeed JSON config (ds_config.json plus a \"vktrain\" section)\n"
               "and prints it resolved: DeepSpeed's defaults filled in and the batch identity\n"
               "train_batch_size = micro batch x gradient_accumulation_steps x world size\n"
               "solved. Warnings (unknown keys, keys vktrain ignores) go to stderr.\n"
               "Exit code 0: valid; 1: invalid (the message names the key); 2: usage.\n\n"
               "  --world N   the number of ranks to resolve for (default: $WORLD_SIZE, else 1)\n"
               "  --json      print the resolved config as JSON (DeepSpeed's layout)\n");
    return code;
}

/* One line per leaf, "section.key   value", in the order of the JSON. */
static void print_flat(json_t *v, const char *prefix)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach(v, k, m) {
            char path[256];
            snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", k);
            print_flat(m, path);
        }
        return;
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(10));
    printf("  %-52s %s\n", prefix, s ? s : "?");
    free(s);
}

static int parse_world(const char *s, uint32_t *w)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 1000000) return -1;
    *w = (uint32_t)v;
    return 0;
}

static int print_human(const char *path, const vkt_config *c, const char *json)
{
    json_t *root = json_loads(json, 0, NULL);
    if (!root) return cli_fail(VKT_ERR_INTERNAL, "config check");
    printf("%s: valid for world size %u", path, c->world_size);
    if (c->warning_count) printf(" (%u warning%s on stderr)", c->warning_count,
                                 c->warning_count == 1 ? "" : "s");
    printf("\n");
    if (c->train_micro_batch_size_per_gpu)
        printf("  batch: %llu = %llu per rank x %llu accumulation x %u ranks\n",
               (unsigned long long)c->train_batch_size,
               (unsigned long long)c->train_micro_batch_size_per_gpu,
               (unsigned long long)c->gradient_accumulation_steps, c->world_size);
    else
        printf("  batch: %llu = sum of vktrain.rank_batch x %llu accumulation\n",
               (unsigned long long)c->train_batch_size,
               (unsigned long long)c->gradient_accumulation_steps);
    if (!c->optimizer.given) printf("  optimizer: none given (the program supplies one)\n");
    print_flat(root, "");
    json_decref(root);
    return 0;
}

static int check(int argc, char **argv)
{
    static const struct option opts[] = {{"world", required_argument, NULL, 'w'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    vkt_config_opts o = VKT_CONFIG_OPTS_INIT;
    bool as_json = false;
    const char *env = getenv("WORLD_SIZE");
    if (env && *env && parse_world(env, &o.world_size))
        return cli_usage_error("config", "WORLD_SIZE='%s' is not a rank count", env);
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c == 'w') {
            if (parse_world(optarg, &o.world_size))
                return cli_usage_error("config", "--world '%s': expected an integer >= 1",
                                       optarg);
        } else if (c == 'j') {
            as_json = true;
        } else if (c == 'h') {
            return usage(stdout, 0);
        } else {
            return usage(stderr, 2);
        }
    }
    if (optind + 1 != argc)
        return cli_usage_error("config", optind < argc ? "one FILE, please" : "FILE is missing");
    const char *path = argv[optind];
    o.warn_stream = stderr;
    vkt_config *cfg;
    vkt_status st = vkt_config_load(path, &o, &cfg);
    if (st != VKT_OK) return cli_fail(st, "config check");
    char *json = NULL;
    st = vkt_config_to_json(cfg, &json);
    int rc = st != VKT_OK ? cli_fail(st, "config check") : 0;
    if (rc == 0 && as_json) printf("%s\n", json);
    else if (rc == 0) rc = print_human(path, cfg, json);
    vkt_free(json);
    vkt_config_destroy(cfg);
    return rc;
}

int cmd_config(int argc, char **argv)
{
    if (argc < 2) return usage(stderr, 2);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return usage(stdout, 0);
    if (!strcmp(argv[1], "check")) return check(argc - 1, argv + 1);
    return cli_usage_error("config", "unknown subcommand '%s' (there is: check)", argv[1]);
}
