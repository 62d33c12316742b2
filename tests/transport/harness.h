/* Multi-process test harness for the transport tests: runs a function in
 * world_size forked child processes ("ranks") under a hard deadline. */
#ifndef VKT_TEST_TRANSPORT_HARNESS_H
#define VKT_TEST_TRANSPORT_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "vktrain/comm.h"

/* Body of one rank; returns 0 on success (the child exits with it). */
typedef int (*rank_fn)(int rank, int world_size, void *arg);

/* Fork world_size ranks running fn and wait for all of them for at most
 * deadline_s; stragglers are killed (SIGKILL) and count as failures.
 * Returns the number of ranks that failed; exit codes go to codes[] when
 * non-NULL (-signal for a killed child, -1000 for a timeout). */
int run_ranks(int world_size, rank_fn fn, void *arg, double deadline_s, int *codes);

/* A TCP store served on 127.0.0.1 with an ephemeral port (so parallel test
 * runs never collide) by a helper process. Writes "127.0.0.1:PORT" into addr.
 * Returns an opaque handle for stop_store, or NULL (test fails). */
void *start_store(const char *secret, char *addr, size_t cap);
void stop_store(void *srv);

/* opts for rank/world with the given store, secret and timeout. */
vkt_comm_opts test_opts(int rank, int world, const char *store, double timeout_s);

#define TEST_SECRET "vktrain-test-secret"

/* Print a failure from inside a rank (one write, so ranks do not interleave)
 * and return 1. */
int rank_fail(int rank, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define RANK_FAIL(rank, ...) rank_fail((rank), __FILE__, __LINE__, __VA_ARGS__)

/* Element i of a typed buffer as a double, and the reverse (f16/bf16 round
 * to nearest even). */
double tv_get(const void *p, size_t i, vkt_dtype t);
void tv_set(void *p, size_t i, vkt_dtype t, double v);

/* The collectives' reference data: rank q's input at element j (small
 * integers, so sums are exact in every dtype: |sum| <= 8 * 8 < 256, exact
 * even in bf16; i64 also exercises the high bits), the result of op over
 * ranks 0..n-1 (integer division for an i32/i64 average), and whether a
 * result is within the dtype's rounding of it. */
double tv_input(int q, size_t j, vkt_dtype t);
double tv_expect(int n, size_t j, vkt_dtype t, vkt_redop op);
int tv_close(double got, double want, vkt_dtype t);

#endif
