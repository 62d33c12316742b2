/* vktrain: the command-line front end. Dispatches to subcommands; only this
 * layer sets exit codes (0 ok, 1 failure, 2 usage error). */
#include <string.h>

#include "cli/cli.h"

typedef struct command {
    const char *name;
    cli_fn fn;
    const char *summary;
} command;

static const command commands[] = {
#ifdef VKT_HAVE_ENGINE
    {"train", cmd_train, "train a model (MLP on IDX images, GPT on text) with every rank"},
#endif
    {"sample", cmd_sample, "generate text from a GPT checkpoint saved by train"},
    {"info", cmd_info, "list Vulkan devices and their capabilities"},
    {"selftest", cmd_selftest, "run real kernels on a device and check them against C"},
    {"launch", cmd_launch, "run the ranks of a program here (-n N) or over ssh (--hostfile)"},
    {"bench", cmd_bench, "benchmarks: dispatch, ops, comm, overlap (DDP), memory (ZeRO)"},
    {"ckpt", cmd_ckpt, "checkpoints: info (and checksum verification), consolidate to fp32"},
    {"config", cmd_config, "check FILE: validate a DeepSpeed JSON config, print it resolved"},
    {"estimate", cmd_estimate, "model-state memory per rank for ZeRO stages 0-3"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: vktrain [--version] [--help] <command> [<args>]\n\n"
               "Portable distributed neural-network training on Vulkan compute.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'vktrain <command> --help' describes a command.\n"
               "Environment: VKT_DEVICE (device selector), VKT_VALIDATE=1 (Vulkan validation "
               "layer),\n  VKT_PIPELINE_CACHE_DIR, VKT_DEBUG=1 (source locations in errors).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("vktrain %s (library %s)\n", VKT_VERSION_STRING, vkt_version_string());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "vktrain: '%s' is not a command. See 'vktrain --help'.\n", argv[1]);
    return 2;
}
