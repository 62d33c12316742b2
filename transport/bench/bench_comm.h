/* vkt-bench-comm: the collectives benchmark of libvkt_transport (no Vulkan).
 * `vktrain bench comm` and the standalone vkt-bench-comm binary both call
 * vkt_bench_comm_main with the arguments after "comm" (argv[0] is the
 * program name for messages). It forks its ranks itself, prints nccl-tests
 * style tables (or --json) on stdout and returns the process exit code: 0,
 * 1 when a rank failed or a result was wrong, 2 for bad arguments. Run
 * `vkt-bench-comm --help` for the options. */
#ifndef VKT_BENCH_COMM_H
#define VKT_BENCH_COMM_H

#ifdef __cplusplus
extern "C" {
#endif

int vkt_bench_comm_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
