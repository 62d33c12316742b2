/* The vktrain command: shared declarations of the subcommands. */
#ifndef VKT_CLI_H
#define VKT_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vktrain/vktrain.h"

/* A subcommand: argv[0] is its own name. Returns the process exit code. */
typedef int (*cli_fn)(int argc, char **argv);

int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_ops(int argc, char **argv); /* argv[0] is "ops" */
int cmd_bench_overlap(int argc, char **argv); /* argv[0] is "overlap" */
int cmd_bench_memory(int argc, char **argv);  /* argv[0] is "memory" */
int cmd_selftest(int argc, char **argv);
int cmd_ckpt(int argc, char **argv);
int cmd_config(int argc, char **argv);
int cmd_estimate(int argc, char **argv);
int cmd_launch(int argc, char **argv);
int cmd_train(int argc, char **argv);  /* needs the engine (VKT_HAVE_ENGINE) */
int cmd_sample(int argc, char **argv);

/* Print "vktrain: <what>: <last error>" and return exit code 1. */
int cli_fail(vkt_status st, const char *what);
/* Print an argument error with the usage hint and return exit code 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...);
/* "AMD EPYC (avx2, no avx512)" — the host CPU and its vector ISA. */
const char *cli_host_isa(void);
/* Open a device by selector (NULL: default), printing errors. */
int cli_open_device(const char *select, vkt_device **out);
/* Median of n doubles (sorts v in place). */
double cli_median(double *v, int n);
double cli_now_s(void);
/* --OPT's value s as a whole number in [lo, hi], or a usage error of cmd
 * naming the option, the range and the value (returns 2). */
int cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t lo, uint64_t hi,
                  uint64_t *out);

#endif
