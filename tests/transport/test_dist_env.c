/* Unit tests of vkt_dist_env_detect: the torchrun-style, SLURM and Open MPI
 * environments set by hand in this process, their precedence, malformed
 * values, the SLURM hostlist and tasks-per-node parsers, and the store
 * address vkt_comm_create derives (or refuses to guess). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dist_env.h"
#include "vktrain/comm.h"

static const char *all_vars[] = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
    "SLURM_PROCID", "SLURM_NTASKS", "SLURM_NPROCS", "SLURM_LOCALID", "SLURM_NODEID",
    "SLURM_STEP_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE", "SLURM_STEP_NODELIST",
    "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_ID", "SLURM_JOBID", "SLURM_STEP_ID",
    "SLURM_STEPID",
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid"};

/* Clear every launcher variable, then set "NAME=VALUE" pairs. */
static void env(const char *first, ...)
{
    for (size_t i = 0; i < sizeof all_vars / sizeof all_vars[0]; i++) unsetenv(all_vars[i]);
    va_list ap;
    va_start(ap, first);
    for (const char *kv = first; kv; kv = va_arg(ap, const char *)) {
        char name[64];
        size_t n = strcspn(kv, "=");
        snprintf(name, sizeof name, "%.*s", (int)n, kv);
        setenv(name, kv + n + 1, 1);
    }
    va_end(ap);
}

static vkt_dist_env detect_ok(void)
{
    vkt_dist_env e;
    memset(&e, 0x5a, sizeof e);
    vkt_status st = vkt_dist_env_detect(&e);
    if (st != VKT_OK) fail_msg("detect failed: %s", vkt_last_error());
    return e;
}

/* The error names the variable and its value. */
static void detect_fails(const char *want)
{
    vkt_dist_env e;
    assert_int_equal(vkt_dist_env_detect(&e), VKT_ERR_INVALID_ARG);
    if (!strstr(vkt_last_error(), want))
        fail_msg("message '%s' lacks '%s'", vkt_last_error(), want);
}

static void test_hostlist(void **state)
{
    (void)state;
    static const char *good[][2] = {
        {"localhost", "localhost"},   {"node[01-03,07],gpu5", "node01"},
        {"gpu5,node[1-2]", "gpu5"},   {"rack[1-2]-n[3-4]", "rack1-n3"},
        {"n[007]", "n007"},           {"a-b.c,d", "a-b.c"},
        {"x[10-12],y[1,3-4]z", "x10"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char out[64];
        vkt_status st = vkt__hostlist_first("L", good[i][0], out, sizeof out);
        if (st != VKT_OK) fail_msg("%s: %s", good[i][0], vkt_last_error());
        assert_string_equal(out, good[i][1]);
    }
    static const char *bad[] = {"",        "node[01-03", "node[]",  "node[a-b]", "[",
                                ",x",      "x,",         "n[3-1]",  "n[1-]",     "n]",
                                "n[1,,2]", "a,,b",       "n[1-2x]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[64];
        if (vkt__hostlist_first("SLURM_NODELIST", bad[i], out, sizeof out) !=
            VKT_ERR_INVALID_ARG)
            fail_msg("'%s' was accepted as '%s'", bad[i], out);
        if (*bad[i] && !strstr(vkt_last_error(), bad[i]))
            fail_msg("message '%s' does not quote '%s'", vkt_last_error(), bad[i]);
    }
    char tiny[4];
    assert_int_equal(vkt__hostlist_first("L", "node1", tiny, sizeof tiny), VKT_ERR_INVALID_ARG);
}

static void test_tasks_per_node(void **state)
{
    (void)state;
    int n = -1;
    const struct { const char *spec; int node, want; } ok[] = {
        {"4", 0, 4}, {"2(x3),1", 0, 2}, {"2(x3),1", 2, 2}, {"2(x3),1", 3, 1},
        {"1,5(x2)", 2, 5}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(vkt__slurm_tasks_on_node("T", ok[i].spec, ok[i].node, &n), VKT_OK);
        assert_int_equal(n, ok[i].want);
    }
    assert_int_equal(vkt__slurm_tasks_on_node("T", "2(x3),1", 4, &n), VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt__slurm_tasks_on_node("T", "2(x)", 0, &n), VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt__slurm_tasks_on_node("T", "x", 0, &n), VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt__slurm_tasks_on_node("T", "0", 0, &n), VKT_ERR_INVALID_ARG);
}

static void test_torchrun(void **state)
{
    (void)state;
    env("RANK=1", "WORLD_SIZE=4", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=2",
        "MASTER_ADDR=10.0.0.7", "MASTER_PORT=29500", NULL);
    vkt_dist_env e = detect_ok();
    assert_string_equal(e.source, "torchrun");
    assert_int_equal(e.rank, 1);
    assert_int_equal(e.world_size, 4);
    assert_int_equal(e.local_rank, 1);
    assert_int_equal(e.local_world_size, 2);
    assert_string_equal(e.master_addr, "10.0.0.7");
    assert_int_equal(e.master_port, 29500);
    /* torchrun-style wins over SLURM and Open MPI variables */
    env("RANK=0", "WORLD_SIZE=2", "SLURM_PROCID=1", "SLURM_NTASKS=3",
        "OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=3", NULL);
    e = detect_ok();
    assert_string_equal(e.source, "torchrun");
    assert_int_equal(e.world_size, 2);
    assert_int_equal(e.local_rank, -1); /* not given */
    assert_int_equal(e.master_port, 0);
    env("RANK=abc", "WORLD_SIZE=2", NULL);
    detect_fails("RANK=abc");
    env("RANK=2", "WORLD_SIZE=2", NULL);
    detect_fails("RANK=2 is not below WORLD_SIZE=2");
    env("RANK=0", NULL);
    detect_fails("WORLD_SIZE is not set");
    env("RANK=0", "WORLD_SIZE=0", NULL);
    detect_fails("WORLD_SIZE=0");
    env("RANK=-1", "WORLD_SIZE=2", NULL);
    detect_fails("RANK=-1");
    env("RANK=0", "WORLD_SIZE=2", "MASTER_PORT=70000", NULL);
    detect_fails("MASTER_PORT=70000");
    env("RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=3", "LOCAL_WORLD_SIZE=2", NULL);
    detect_fails("LOCAL_RANK=3");
}

static void test_slurm(void **state)
{
    (void)state;
    env("SLURM_PROCID=5", "SLURM_NTASKS=7", "SLURM_LOCALID=1", "SLURM_NODEID=2", "SLURM_STEP_ID=0",
        "SLURM_STEP_TASKS_PER_NODE=2(x3),1", "SLURM_STEP_NODELIST=gpu[07-09,12]",
        "SLURM_NODELIST=other", "SLURM_JOB_ID=123456", NULL);
    vkt_dist_env e = detect_ok();
    assert_string_equal(e.source, "slurm");
    assert_int_equal(e.rank, 5);
    assert_int_equal(e.world_size, 7);
    assert_int_equal(e.local_rank, 1);
    assert_int_equal(e.local_world_size, 2);
    assert_string_equal(e.master_addr, "gpu07");
    assert_int_equal(e.master_port, 20000 + 123456 % 20000);
    /* MASTER_ADDR/PORT override; SLURM_NODELIST and NTASKS_PER_NODE as fallbacks */
    env("SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_LOCALID=0", "SLURM_NTASKS_PER_NODE=2",
        "SLURM_NODELIST=localhost", "SLURM_JOBID=7", "SLURM_STEPID=3", NULL);
    e = detect_ok();
    assert_string_equal(e.master_addr, "localhost");
    assert_int_equal(e.master_port, 20007);
    assert_int_equal(e.local_world_size, 2);
    setenv("MASTER_ADDR", "head", 1);
    setenv("MASTER_PORT", "4242", 1);
    e = detect_ok();
    assert_string_equal(e.master_addr, "head");
    assert_int_equal(e.master_port, 4242);
    env("SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_STEP_ID=0", "SLURM_NODELIST=node[1-", NULL);
    detect_fails("SLURM_NODELIST=node[1-");
    env("SLURM_PROCID=2", "SLURM_NTASKS=2", "SLURM_STEP_ID=0", NULL);
    detect_fails("SLURM_PROCID=2 is not below SLURM_NTASKS=2");
    env("SLURM_PROCID=0", "SLURM_NTASKS=two", NULL);
    detect_fails("SLURM_NTASKS=two");
    env("SLURM_PROCID=0", NULL);
    detect_fails("SLURM_NPROCS is not set");
    /* A batch script (sbatch -n 2) has SLURM_PROCID=0 and SLURM_NTASKS=2 but
     * no step id: not a rank of 2 that would wait for a partner forever. */
    env("SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_NPROCS=2", "SLURM_LOCALID=0",
        "SLURM_JOB_NODELIST=vm", "SLURM_JOB_ID=14", NULL);
    detect_fails("SLURM_STEP_ID is not");
    assert_non_null(strstr(vkt_last_error(), "srun"));
    env("SLURM_PROCID=0", "SLURM_NTASKS=1", "SLURM_JOB_NODELIST=vm", "SLURM_JOB_ID=14", NULL);
    e = detect_ok(); /* sbatch -n 1: its script is the one rank */
    assert_string_equal(e.source, "slurm");
    assert_int_equal(e.world_size, 1);
}

/* mpirun inside a SLURM job's batch script: every rank also inherits the
 * script's SLURM_PROCID=0 and SLURM_NTASKS; Open MPI's own variables win. */
static void test_ompi_in_slurm(void **state)
{
    (void)state;
    env("SLURM_PROCID=0", "SLURM_NTASKS=2", "SLURM_LOCALID=0", "SLURM_JOB_NODELIST=vm",
        "SLURM_JOB_ID=17", "OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=2",
        "OMPI_COMM_WORLD_LOCAL_RANK=1", "OMPI_COMM_WORLD_LOCAL_SIZE=2",
        "OMPI_MCA_ess_base_jobid=1706622977", NULL);
    vkt_dist_env e = detect_ok();
    assert_string_equal(e.source, "mpirun");
    assert_int_equal(e.rank, 1);
    assert_int_equal(e.local_rank, 1);
    assert_string_equal(e.master_addr, "127.0.0.1");
}

static void test_ompi(void **state)
{
    (void)state;
    env("OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=2", "OMPI_COMM_WORLD_LOCAL_RANK=1",
        "OMPI_COMM_WORLD_LOCAL_SIZE=2", "PMIX_NAMESPACE=prterun-h-1@1", NULL);
    vkt_dist_env e = detect_ok();
    assert_string_equal(e.source, "mpirun");
    assert_int_equal(e.rank, 1);
    assert_int_equal(e.world_size, 2);
    assert_int_equal(e.local_world_size, 2);
    assert_string_equal(e.master_addr, "127.0.0.1"); /* every rank on this host */
    assert_true(e.master_port >= 20000 && e.master_port < 40000);
    int port = e.master_port;
    e = detect_ok(); /* the same namespace gives the same port in every rank */
    assert_int_equal(e.master_port, port);
    /* across hosts, Open MPI names no master: none is guessed */
    env("OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=1",
        "OMPI_COMM_WORLD_LOCAL_SIZE=2", "MASTER_PORT=29400", NULL);
    e = detect_ok();
    assert_string_equal(e.master_addr, "");
    vkt_comm_opts o = VKT_COMM_OPTS_INIT;
    o.job_secret = "s";
    vkt_comm *c = NULL;
    assert_int_equal(vkt_comm_create(&o, &c), VKT_ERR_INVALID_ARG);
    assert_null(c);
    if (!strstr(vkt_last_error(), "MASTER_ADDR") || !strstr(vkt_last_error(), "mpirun -x"))
        fail_msg("no hint to set MASTER_ADDR: %s", vkt_last_error());
    env("OMPI_COMM_WORLD_RANK=x1", "OMPI_COMM_WORLD_SIZE=4", NULL);
    detect_fails("OMPI_COMM_WORLD_RANK=x1");
}

static void test_none(void **state)
{
    (void)state;
    env(NULL);
    vkt_dist_env e = detect_ok();
    assert_string_equal(e.source, "none");
    assert_int_equal(e.rank, 0);
    assert_int_equal(e.world_size, 1);
    assert_int_equal(vkt_dist_env_detect(NULL), VKT_ERR_INVALID_ARG);
    /* a comm with nothing to go on says where a rank can come from */
    vkt_comm_opts o = VKT_COMM_OPTS_INIT;
    o.job_secret = "s";
    vkt_comm *c = NULL;
    assert_int_equal(vkt_comm_create(&o, &c), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "srun"));
    /* explicit rank and world size need no environment: 1 rank, no store */
    o.rank = 0, o.world_size = 1;
    assert_int_equal(vkt_comm_create(&o, &c), VKT_OK);
    assert_int_equal(vkt_comm_size(c), 1);
    vkt_comm_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostlist), cmocka_unit_test(test_tasks_per_node),
        cmocka_unit_test(test_torchrun), cmocka_unit_test(test_slurm),
        cmocka_unit_test(test_ompi),     cmocka_unit_test(test_ompi_in_slurm),
        cmocka_unit_test(test_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
