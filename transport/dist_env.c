/* Where this process sits in a job, from the environment its launcher left:
 * torchrun-style variables, Open MPI's mpirun, or SLURM's srun. Read with
 * getenv on every call (not the cached VKT_* parameters): these variables
 * belong to the launcher, and a test may set them between calls. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist_env.h"
#include "transport_int.h"

/* First port of the range a job id picks a default master port from, and
 * its width: 20000..39999 stays below Linux's ephemeral ports (32768+ is
 * shared, but a busy port fails loudly at bind and MASTER_PORT overrides). */
#define PORT_BASE 20000
#define PORT_SPAN 20000

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* A non-negative decimal int from variable name (value v). */
static vkt_status parse_nonneg(const char *name, const char *v, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    VKT_FAIL_IF(!isdigit((unsigned char)*v) || *end || errno || x > INT_MAX,
                VKT_ERR_INVALID_ARG, "%s=%s is not a non-negative integer; check the job's "
                "launcher or unset %s", name, v, name);
    *out = (int)x;
    return VKT_OK;
}

/* Variable name as an int; absent: *out = deflt (required: an error). */
static vkt_status env_int(const char *name, int required, int deflt, const char *why, int *out)
{
    const char *v = env(name);
    if (!v) {
        VKT_FAIL_IF(required, VKT_ERR_INVALID_ARG, "%s is not set; %s", name, why);
        *out = deflt;
        return VKT_OK;
    }
    return parse_nonneg(name, v, out);
}

/* ------------------------------------------------------------ hostlists -- */

/* Check one "[...]" body from s (after '['); *end = past ']'. The first
 * number's text goes to first (cap bytes). */
static vkt_status bracket(const char *what, const char *list, const char *s, const char **end,
                          char *first, size_t cap)
{
    const char *start = s;
    for (;;) {
        const char *lo = s;
        while (isdigit((unsigned char)*s)) s++;
        size_t nlo = (size_t)(s - lo);
        VKT_FAIL_IF(nlo == 0, VKT_ERR_INVALID_ARG, "%s=%s: expected a number at '%s' inside "
                    "[...]", what, list, lo);
        if (lo == start) {
            VKT_FAIL_IF(nlo >= cap, VKT_ERR_INVALID_ARG, "%s=%s: host name too long", what,
                        list);
            memcpy(first, lo, nlo);
            first[nlo] = '\0';
        }
        if (*s == '-') {
            const char *hi = ++s;
            while (isdigit((unsigned char)*s)) s++;
            VKT_FAIL_IF(s == hi || strtoull(hi, NULL, 10) < strtoull(lo, NULL, 10),
                        VKT_ERR_INVALID_ARG, "%s=%s: bad range '%.*s' (want LOW-HIGH, digits, "
                        "LOW <= HIGH)", what, list, (int)(s - lo), lo);
        }
        if (*s == ']') break;
        VKT_FAIL_IF(*s != ',', VKT_ERR_INVALID_ARG, "%s=%s: expected ',' or ']' at '%s'", what,
                    list, s);
        s++;
    }
    *end = s + 1;
    return VKT_OK;
}

vkt_status vkt__hostlist_first(const char *what, const char *list, char *out, size_t cap)
{
    VKT_FAIL_IF(!list || !*list, VKT_ERR_INVALID_ARG, "%s is empty", what);
    size_t n = 0;
    int item = 0;
    const char *s = list;
    for (;;) { /* one host expression per iteration, up to ',' or the end */
        const char *begin = s;
        while (*s && *s != ',') {
            if (*s == ']') return VKT_ERROR(VKT_ERR_INVALID_ARG, "%s=%s: ']' without '['",
                                            what, list);
            char num[64];
            if (*s == '[') {
                VKT_CHECK(bracket(what, list, s + 1, &s, num, sizeof num));
            } else {
                num[0] = *s++, num[1] = '\0';
            }
            size_t k = strlen(num);
            if (item == 0) {
                VKT_FAIL_IF(n + k >= cap, VKT_ERR_INVALID_ARG, "%s=%s: first host name longer "
                            "than %zu bytes", what, list, cap - 1);
                memcpy(out + n, num, k + 1);
                n += k;
            }
        }
        VKT_FAIL_IF(s == begin, VKT_ERR_INVALID_ARG, "%s=%s: empty host name", what, list);
        if (!*s) break;
        s++; /* ',' between hosts */
        item++;
    }
    return VKT_OK;
}

vkt_status vkt__slurm_tasks_on_node(const char *what, const char *spec, int node, int *out)
{
    const char *s = spec;
    for (;;) {
        char *end;
        long tasks = strtol(s, &end, 10), times = 1;
        VKT_FAIL_IF(end == s || tasks < 1 || tasks > INT_MAX || !isdigit((unsigned char)*s),
                    VKT_ERR_INVALID_ARG, "%s=%s: expected a task count at '%s'", what, spec, s);
        s = end;
        if (strncmp(s, "(x", 2) == 0) {
            times = strtol(s + 2, &end, 10);
            VKT_FAIL_IF(end == s + 2 || *end != ')' || times < 1, VKT_ERR_INVALID_ARG,
                        "%s=%s: expected '(xN)' at '%s'", what, spec, s);
            s = end + 1;
        }
        if (node < times) {
            *out = (int)tasks;
            return VKT_OK;
        }
        node -= (int)times;
        VKT_FAIL_IF(*s != ',', VKT_ERR_INVALID_ARG, "%s=%s: %s", what, spec,
                    *s ? "expected ','" : "fewer nodes than SLURM_NODEID");
        s++;
    }
}

/* -------------------------------------------------------------- sources -- */

static vkt_status set_master(vkt_dist_env *e, const char *what, const char *host)
{
    VKT_FAIL_IF(strlen(host) >= sizeof e->master_addr, VKT_ERR_INVALID_ARG,
                "%s is longer than %zu bytes", what, sizeof e->master_addr - 1);
    snprintf(e->master_addr, sizeof e->master_addr, "%s", host);
    return VKT_OK;
}

/* MASTER_ADDR / MASTER_PORT override whatever a source derived. */
static vkt_status master_overrides(vkt_dist_env *e)
{
    const char *a = env("MASTER_ADDR");
    if (a) VKT_CHECK(set_master(e, "MASTER_ADDR", a));
    const char *p = env("MASTER_PORT");
    if (p) {
        VKT_CHECK(parse_nonneg("MASTER_PORT", p, &e->master_port));
        VKT_FAIL_IF(e->master_port < 1 || e->master_port > 65535, VKT_ERR_INVALID_ARG,
                    "MASTER_PORT=%s is not a TCP port (1..65535)", p);
    }
    return VKT_OK;
}

static vkt_status from_torchrun(vkt_dist_env *e)
{
    static const char why[] = "torchrun-style jobs set both RANK and WORLD_SIZE";
    e->source = "torchrun";
    VKT_CHECK(env_int("RANK", 1, 0, why, &e->rank));
    VKT_CHECK(env_int("WORLD_SIZE", 1, 0, why, &e->world_size));
    VKT_CHECK(env_int("LOCAL_RANK", 0, -1, "", &e->local_rank));
    return env_int("LOCAL_WORLD_SIZE", 0, -1, "", &e->local_world_size);
}

/* Under srun: SLURM_PROCID/NTASKS/LOCALID, tasks on this node from the
 * step's layout, the master on the first node of the step. */
static vkt_status from_slurm(vkt_dist_env *e)
{
    static const char why[] = "run the program with srun inside the allocation";
    e->source = "slurm";
    VKT_CHECK(env_int("SLURM_PROCID", 1, 0, why, &e->rank));
    const char *size_var = env("SLURM_NTASKS") ? "SLURM_NTASKS" : "SLURM_NPROCS";
    VKT_CHECK(env_int(size_var, 1, 0, why, &e->world_size));
    /* A job's batch script has SLURM_PROCID=0 and the allocation's task
     * count too, but no step id: it is one process, not a rank of srun's,
     * and would wait for ranks that nobody starts. */
    VKT_FAIL_IF(e->world_size > 1 && !env("SLURM_STEP_ID") && !env("SLURM_STEPID"),
                VKT_ERR_INVALID_ARG, "SLURM_PROCID is set with %s=%d but SLURM_STEP_ID is "
                "not: this is the job's batch script, not a task of srun; start the ranks "
                "with 'srun PROGRAM', or unset SLURM_PROCID for one process", size_var,
                e->world_size);
    VKT_CHECK(env_int("SLURM_LOCALID", 0, -1, "", &e->local_rank));
    const char *per = env("SLURM_STEP_TASKS_PER_NODE");
    if (per) {
        int node;
        VKT_CHECK(env_int("SLURM_NODEID", 0, 0, "", &node));
        VKT_CHECK(vkt__slurm_tasks_on_node("SLURM_STEP_TASKS_PER_NODE", per, node,
                                           &e->local_world_size));
    } else {
        VKT_CHECK(env_int("SLURM_NTASKS_PER_NODE", 0, -1, "", &e->local_world_size));
    }
    static const char *lists[] = {"SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"};
    for (int i = 0; i < 3; i++) {
        const char *l = env(lists[i]);
        if (!l) continue;
        VKT_CHECK(vkt__hostlist_first(lists[i], l, e->master_addr, sizeof e->master_addr));
        break;
    }
    const char *job = env("SLURM_JOB_ID") ? "SLURM_JOB_ID" : "SLURM_JOBID";
    int id;
    VKT_CHECK(env_int(job, 0, -1, "", &id));
    if (id >= 0) e->master_port = PORT_BASE + id % PORT_SPAN;
    return VKT_OK;
}

/* Under Open MPI's mpirun: OMPI_COMM_WORLD_*. mpirun has no master host;
 * when every rank is on this host it is 127.0.0.1, else MASTER_ADDR must say. */
static vkt_status from_ompi(vkt_dist_env *e)
{
    static const char why[] = "run the program with Open MPI's mpirun";
    e->source = "mpirun";
    VKT_CHECK(env_int("OMPI_COMM_WORLD_RANK", 1, 0, why, &e->rank));
    VKT_CHECK(env_int("OMPI_COMM_WORLD_SIZE", 1, 0, why, &e->world_size));
    VKT_CHECK(env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0, -1, "", &e->local_rank));
    VKT_CHECK(env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 0, -1, "", &e->local_world_size));
    if (e->local_world_size == e->world_size) snprintf(e->master_addr, sizeof e->master_addr, "127.0.0.1");
    /* The job's name is the same in every rank: PMIx's namespace (Open MPI
     * 4 and 5), else Open MPI 4's job id. FNV-1a of it picks the port. */
    const char *job = env("PMIX_NAMESPACE");
    if (!job) job = env("OMPI_MCA_ess_base_jobid");
    if (job) {
        uint32_t h = 2166136261u;
        for (const char *c = job; *c; c++) h = (h ^ (unsigned char)*c) * 16777619u;
        e->master_port = PORT_BASE + (int)(h % PORT_SPAN);
    }
    return VKT_OK;
}

VKT_API vkt_status vkt_dist_env_detect(vkt_dist_env *out)
{
    VKT_FAIL_IF(!out, VKT_ERR_INVALID_ARG, "vkt_dist_env_detect: out is NULL");
    vkt_dist_env e = {.rank = 0, .world_size = 1, .local_rank = 0, .local_world_size = 1,
                      .source = "none"};
    vkt_status st = VKT_OK;
    /* mpirun before SLURM: mpirun inside a SLURM job's batch script hands
     * every rank the script's SLURM_PROCID=0 as well as its own rank. */
    if (env("RANK") || env("WORLD_SIZE"))
        st = from_torchrun(&e);
    else if (env("OMPI_COMM_WORLD_RANK"))
        st = from_ompi(&e);
    else if (env("SLURM_PROCID"))
        st = from_slurm(&e);
    if (st == VKT_OK && strcmp(e.source, "none") != 0) st = master_overrides(&e);
    if (st != VKT_OK) return st;
    /* The variables that carried rank and size, for the messages. */
    int src = e.source[0] == 't' ? 0 : e.source[0] == 's' ? 1 : 2;
    static const char *rank_var[] = {"RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"};
    static const char *size_var[] = {"WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"};
    static const char *local_var[] = {"LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"};
    VKT_FAIL_IF(e.world_size < 1, VKT_ERR_INVALID_ARG, "%s=0: a job needs at least one rank",
                size_var[src]);
    VKT_FAIL_IF(e.rank >= e.world_size, VKT_ERR_INVALID_ARG, "%s=%d is not below %s=%d; "
                "check the launcher's variables", rank_var[src], e.rank, size_var[src],
                e.world_size);
    VKT_FAIL_IF(e.local_rank >= 0 && e.local_world_size >= 0 &&
                    e.local_rank >= e.local_world_size,
                VKT_ERR_INVALID_ARG, "%s=%d is not below this node's %d ranks (%s)",
                local_var[src], e.local_rank, e.local_world_size, e.source);
    *out = e;
    return VKT_OK;
}
