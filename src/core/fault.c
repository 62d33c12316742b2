/* TEST-ONLY fault injection: VKT_INJECT_FAULT lets the fault test suite
 * (tests/faults) make a real process fail at a named point, so each failure
 * is tested end to end through the CLI. Unset (always, in real use), every
 * call below is one cached getenv and returns false.
 *
 *   VKT_INJECT_FAULT=WHAT:N[@RANK][,WHAT:N[@RANK]...]
 *
 * fires on the N-th pass (1-based, counted per process) through the point
 * WHAT, and only in the process whose RANK variable is RANK when @RANK is
 * given (`vktrain launch` gives every rank the same environment). Points:
 *   oom            a device memory block allocation (gpu/memory.c) fails with
 *                  VK_ERROR_OUT_OF_DEVICE_MEMORY
 *   device_lost    a queue submit (gpu/device.c) fails with VK_ERROR_DEVICE_LOST
 *   kill_forward / stop_forward   SIGKILL / SIGSTOP before the engine's forward of
 *                  a micro-batch (cli/cmd_train.c)
 *   kill_backward  SIGKILL before its backward, which starts the gradient reduction
 *   kill_save      SIGKILL after the rank wrote its checkpoint shard, before the
 *                  commit (formats/ckpt_dir.c; ranks without a shard never pass)
 *   ib_bad_rkey    a verbs link announces a wrong rkey (transport/verbs_conn.c)
 *   ib_qp_error    a verbs QP is moved to the error state (transport/verbs_chan.c)
 *   ib_connect_fail  a verbs connect fails before its side channel reaches the
 *                  peer (transport/verbs_conn.c) */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core_int.h"

#define FAULT_MAX 8

typedef struct fault_rule {
    char what[32];
    long n;
    atomic_long passes;
} fault_rule;

static fault_rule rules[FAULT_MAX];
static int nrules;
static pthread_once_t parsed = PTHREAD_ONCE_INIT;

/* Parse once; a malformed entry is reported and ignored, so a typo cannot
 * quietly test nothing. */
static void parse(void)
{
    int n = 0;
    const char *spec = vkt__env_str("VKT_INJECT_FAULT");
    const char *my_rank = getenv("RANK");
    for (const char *p = spec; p && *p && n < FAULT_MAX;) {
        size_t len = strcspn(p, ",");
        char item[64], what[32];
        long count = 0, rank = -1;
        snprintf(item, sizeof item, "%.*s", (int)(len < 63 ? len : 63), p);
        int got = sscanf(item, "%31[a-z_]:%ld@%ld", what, &count, &rank);
        if (got < 2 || count < 1)
            fprintf(stderr, "vktrain: warning: VKT_INJECT_FAULT entry '%s' is not WHAT:N[@RANK]; "
                            "ignored\n", item);
        else if (rank < 0 || (my_rank && atol(my_rank) == rank)) {
            snprintf(rules[n].what, sizeof rules[n].what, "%s", what);
            rules[n].n = count;
            atomic_init(&rules[n].passes, 0);
            n++;
        }
        p += len + (p[len] == ',');
    }
    nrules = n;
}

bool vkt__fault_hit(const char *what)
{
    pthread_once(&parsed, parse);
    for (int i = 0; i < nrules; i++)
        if (!strcmp(rules[i].what, what) && atomic_fetch_add(&rules[i].passes, 1) + 1 == rules[i].n) {
            fprintf(stderr, "vktrain: VKT_INJECT_FAULT: injecting %s (pass %ld)\n", what,
                    rules[i].n);
            return true;
        }
    return false;
}

void vkt__fault_point(const char *where)
{
    char name[40];
    snprintf(name, sizeof name, "kill_%s", where);
    if (vkt__fault_hit(name)) raise(SIGKILL);
    snprintf(name, sizeof name, "stop_%s", where);
    if (vkt__fault_hit(name)) raise(SIGSTOP);
}
