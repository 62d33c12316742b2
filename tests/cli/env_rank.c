/* env_rank: a rank that finds its job only through the environment its
 * launcher left (vktrain launch, torchrun-style variables, srun, mpirun),
 * joins it with a default vkt_comm_opts and all-reduces rank + 1.
 *   env_rank            prints one line and exits 0 when the sum is right
 *   env_rank detect     prints what vkt_dist_env_detect found, no comm
 * Output: "env_rank source=S rank=R world=W local=L/LW master=H:P sum=X".
 * On failure it prints the library's message and exits 1. */
#include <stdio.h>
#include <string.h>

#include "vktrain/comm.h"

int main(int argc, char **argv)
{
    vkt_dist_env e;
    if (vkt_dist_env_detect(&e) != VKT_OK) {
        fprintf(stderr, "env_rank: detect: %s\n", vkt_last_error());
        return 1;
    }
    printf("env_rank source=%s rank=%d world=%d local=%d/%d master=%s:%d", e.source, e.rank,
           e.world_size, e.local_rank, e.local_world_size, e.master_addr, e.master_port);
    if (argc > 1 && strcmp(argv[1], "detect") == 0) {
        printf("\n");
        return 0;
    }
    fflush(stdout);
    vkt_comm_opts o = VKT_COMM_OPTS_INIT;
    vkt_comm *c = NULL;
    if (vkt_comm_create(&o, &c) != VKT_OK) {
        fprintf(stderr, "\nenv_rank: joining the job: %s\n", vkt_last_error());
        return 1;
    }
    double v = vkt_comm_rank(c) + 1;
    vkt_status st = vkt_comm_allreduce(c, &v, &v, 1, VKT_DTYPE_F64, VKT_REDOP_SUM);
    int n = vkt_comm_size(c);
    vkt_comm_destroy(c);
    if (st != VKT_OK) {
        fprintf(stderr, "\nenv_rank: allreduce: %s\n", vkt_last_error());
        return 1;
    }
    printf(" sum=%g\n", v);
    return v == n * (n + 1) / 2.0 ? 0 : 1;
}
