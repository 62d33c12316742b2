/* Multi-process harness (see harness.h). */
#include "harness.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transport_int.h"

int run_ranks(int world_size, rank_fn fn, void *arg, double deadline_s, int *codes)
{
    pid_t pids[64];
    int failed = 0, left = world_size;
    fflush(stdout);
    fflush(stderr);
    for (int r = 0; r < world_size; r++) {
        pids[r] = fork();
        if (pids[r] == 0) {
            alarm((unsigned)deadline_s + 5); /* belt and braces: never outlive the test */
            int rc = fn(r, world_size, arg);
            fflush(stdout);
            fflush(stderr);
            _exit(rc & 0xff);
        }
        if (codes) codes[r] = 0;
    }
    double end = vkt__now() + deadline_s;
    while (left > 0) {
        int status;
        pid_t p = waitpid(-1, &status, WNOHANG);
        if (p <= 0) {
            if (vkt__now() > end) break;
            vkt__sleep_ms(5);
            continue;
        }
        for (int r = 0; r < world_size; r++) {
            if (pids[r] != p) continue;
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
            if (codes) codes[r] = code;
            if (code != 0) failed++;
            pids[r] = 0;
            left--;
        }
    }
    for (int r = 0; r < world_size; r++) {
        if (pids[r] <= 0) continue;
        fprintf(stderr, "harness: rank %d still running after %.0f s; killing it\n", r,
                deadline_s);
        kill(pids[r], SIGKILL);
        waitpid(pids[r], NULL, 0);
        if (codes) codes[r] = -1000;
        failed++;
    }
    return failed;
}

/* The store runs in its own process, not as threads of the test: ranks are
 * forked from the test process, and forking a process that has threads is
 * fragile (ThreadSanitizer refuses it outright). */
typedef struct store_proc {
    pid_t pid;
    int ctl; /* write end: closing it tells the store process to stop */
} store_proc;

static void store_main(const char *secret, int port_fd, int ctl_fd)
{
    vkt__auth auth;
    vkt__store_server *srv = NULL;
    int port = 0;
    if (vkt__auth_init(&auth, secret, secret == NULL) != VKT_OK ||
        vkt__store_tcp_serve("127.0.0.1", 0, &auth, &srv, &port) != VKT_OK) {
        fprintf(stderr, "start_store: %s\n", vkt_last_error());
        _exit(1);
    }
    if (write(port_fd, &port, sizeof port) != (ssize_t)sizeof port) _exit(1);
    char b;
    while (read(ctl_fd, &b, 1) < 0 && errno == EINTR) {
    }
    vkt__store_tcp_stop(srv);
    _exit(0);
}

void *start_store(const char *secret, char *addr, size_t cap)
{
    int pp[2], cp[2], port = 0;
    store_proc *sp = calloc(1, sizeof *sp);
    if (!sp || pipe(pp) != 0 || pipe(cp) != 0) return NULL;
    fflush(stdout);
    fflush(stderr);
    sp->pid = fork();
    if (sp->pid == 0) {
        close(pp[0]);
        close(cp[1]);
        alarm(600); /* never outlive a crashed test */
        store_main(secret, pp[1], cp[0]);
    }
    close(pp[1]);
    close(cp[0]);
    sp->ctl = cp[1];
    ssize_t n = read(pp[0], &port, sizeof port);
    close(pp[0]);
    if (n != (ssize_t)sizeof port) {
        stop_store(sp);
        return NULL;
    }
    snprintf(addr, cap, "127.0.0.1:%d", port);
    return sp;
}

void stop_store(void *p)
{
    store_proc *sp = p;
    if (!sp) return;
    close(sp->ctl);
    waitpid(sp->pid, NULL, 0);
    free(sp);
}

vkt_comm_opts test_opts(int rank, int world, const char *store, double timeout_s)
{
    vkt_comm_opts o = VKT_COMM_OPTS_INIT;
    o.rank = rank;
    o.world_size = world;
    o.store_addr = store;
    o.store_server = 0;
    o.job_secret = TEST_SECRET;
    o.comm_timeout_s = timeout_s;
    return o;
}

double tv_get(const void *p, size_t i, vkt_dtype t)
{
    switch (t) {
    case VKT_DTYPE_F32: return ((const float *)p)[i];
    case VKT_DTYPE_F64: return ((const double *)p)[i];
    case VKT_DTYPE_I32: return ((const int32_t *)p)[i];
    case VKT_DTYPE_I64: return (double)((const int64_t *)p)[i];
    case VKT_DTYPE_F16: return vkt__f16_to_f32(((const uint16_t *)p)[i]);
    case VKT_DTYPE_BF16: return vkt__bf16_to_f32(((const uint16_t *)p)[i]);
    default: return 0;
    }
}

void tv_set(void *p, size_t i, vkt_dtype t, double v)
{
    switch (t) {
    case VKT_DTYPE_F32: ((float *)p)[i] = (float)v; break;
    case VKT_DTYPE_F64: ((double *)p)[i] = v; break;
    case VKT_DTYPE_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case VKT_DTYPE_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case VKT_DTYPE_F16: ((uint16_t *)p)[i] = vkt__f32_to_f16((float)v); break;
    case VKT_DTYPE_BF16: ((uint16_t *)p)[i] = vkt__f32_to_bf16((float)v); break;
    default: break;
    }
}

int rank_fail(int rank, const char *file, int line, const char *fmt, ...)
{
    char msg[1400];
    int n = snprintf(msg, sizeof msg, "rank %d: FAIL %s:%d: ", rank, file, line);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && n < (int)sizeof msg) vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", msg);
    return 1;
}

double tv_input(int q, size_t j, vkt_dtype t)
{
    double v = (double)((int)((j * 7 + (size_t)q * 13) % 17) - 8);
    if (t == VKT_DTYPE_I64) v += (double)((int64_t)q << 33);
    return v;
}

double tv_expect(int n, size_t j, vkt_dtype t, vkt_redop op)
{
    double acc = tv_input(0, j, t);
    for (int q = 1; q < n; q++) {
        double v = tv_input(q, j, t);
        acc = op == VKT_REDOP_MAX ? fmax(acc, v) : op == VKT_REDOP_MIN ? fmin(acc, v) : acc + v;
    }
    if (op != VKT_REDOP_AVG) return acc;
    if (t == VKT_DTYPE_I32 || t == VKT_DTYPE_I64) return (double)((int64_t)acc / n);
    return acc / n;
}

int tv_close(double got, double want, vkt_dtype t)
{
    static const double tol[] = {2e-6, 2e-3, 1e-2, 1e-12, 0, 0}; /* by vkt_dtype */
    return fabs(got - want) <= tol[t] * fmax(1.0, fabs(want));
}
