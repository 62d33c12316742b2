/* The standalone vkt-bench-comm binary (see bench_comm.h). */
#include "bench/bench_comm.h"

int main(int argc, char **argv) { return vkt_bench_comm_main(argc, argv); }
