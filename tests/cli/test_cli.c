/* The vktrain command, run as a real process: exit codes, help, info (table
 * and JSON), selftest with validation on, bench dispatch, errors. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

static const char *exe;
static char out[1 << 16], err[1 << 16];

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

/* Run "vktrain <args>" with extra environment; returns the exit code. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run(const char *env, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "env %s '%s' %s >/tmp/vkt_cli_out.%d 2>/tmp/vkt_cli_err.%d",
             env ? env : "", exe, args, (int)getpid(), (int)getpid());
    int st = system(cmd);
    char p[64];
    snprintf(p, sizeof p, "/tmp/vkt_cli_out.%d", (int)getpid());
    slurp(p, out, sizeof out);
    remove(p);
    snprintf(p, sizeof p, "/tmp/vkt_cli_err.%d", (int)getpid());
    slurp(p, err, sizeof err);
    remove(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_version_and_help(void **state)
{
    (void)state;
    assert_int_equal(run(NULL, "--version"), 0);
    assert_non_null(strstr(out, "vktrain 0."));
    assert_int_equal(run(NULL, "--help"), 0);
    assert_non_null(strstr(out, "info"));
    assert_non_null(strstr(out, "bench"));
    assert_int_equal(run(NULL, ""), 2);
    assert_int_equal(run(NULL, "frobnicate"), 2);
    assert_non_null(strstr(err, "'frobnicate' is not a command"));
    const char *cmds[] = {"info --help", "selftest --help", "bench --help"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(run(NULL, cmds[i]), 0);
        assert_non_null(strstr(out, "usage: vktrain"));
    }
    assert_int_equal(run(NULL, "info --bogus"), 2);
    assert_int_equal(run(NULL, "bench nosuchbench"), 2);
    assert_non_null(strstr(err, "unknown benchmark"));
}

static void test_info_table(void **state)
{
    (void)state;
    assert_int_equal(run("VKT_VALIDATE=1", "info --shaders"), 0);
    const char *fields[] = {"subgroup", "shared memory", "storage range", "fp16", "bf16",
                            "cooperative matrix", "timestamps", "memory heap", "default",
                            "axpy_f32"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!strstr(out, fields[i])) fail_msg("'%s' missing from:\n%s", fields[i], out);
    assert_null(strstr(err, "validation"));
}

static void test_info_json(void **state)
{
    (void)state;
    assert_int_equal(run(NULL, "info --json"), 0);
    json_error_t je;
    json_t *root = json_loads(out, 0, &je);
    if (!root) fail_msg("info --json is not JSON: %s\n%s", je.text, out);
    json_t *devs = json_object_get(root, "devices");
    assert_true(json_is_array(devs));
    assert_true(json_array_size(devs) >= 1);
    json_t *d = json_array_get(devs, 0);
    assert_true(json_is_string(json_object_get(d, "name")));
    assert_true(json_integer_value(json_object_get(json_object_get(d, "subgroup"), "size")) >= 1);
    json_t *lim = json_object_get(d, "limits");
    assert_true(json_integer_value(json_object_get(lim, "max_storage_buffer_range")) >= (1 << 27));
    json_t *feat = json_object_get(d, "features");
    const char *keys[] = {"fp16", "int8", "storage_16bit", "bf16", "cooperative_matrix"};
    for (int i = 0; i < 5; i++) assert_true(json_is_boolean(json_object_get(feat, keys[i])));
    assert_true(json_is_boolean(json_object_get(json_object_get(d, "timestamps"), "supported")));
    assert_true(json_array_size(json_object_get(json_object_get(d, "memory"), "heaps")) >= 1);
    json_decref(root);
}

/* The done-when of the foundation: with VKT_VALIDATE=1 no validation
 * message appears while real kernels run. */
static void test_selftest_validated(void **state)
{
    (void)state;
    int rc = run("VKT_VALIDATE=1", "selftest");
    if (rc != 0) fail_msg("selftest exited %d\n%s\n%s", rc, out, err);
    assert_non_null(strstr(out, "selftest passed"));
    assert_non_null(strstr(out, "validation messages     0"));
    assert_null(strstr(err, "validation"));
}

static void test_device_errors(void **state)
{
    (void)state;
    assert_int_equal(run(NULL, "selftest --device no-such-device"), 1);
    assert_non_null(strstr(err, "no-such-device"));
    assert_non_null(strstr(err, "vktrain info"));
    assert_int_equal(run("VKT_DEVICE=no-such-device", "selftest"), 1);
    assert_non_null(strstr(err, "no-such-device"));
}

static void test_bench_dispatch(void **state)
{
    (void)state;
    int rc = run("VKT_VALIDATE=1", "bench dispatch --reps 7 --dispatches 10 --json");
    if (rc != 0) fail_msg("bench exited %d\n%s\n%s", rc, out, err);
    json_t *o = json_loads(out, 0, NULL);
    assert_non_null(o);
    assert_true(json_real_value(json_object_get(o, "submit_wait_us")) > 0);
    assert_true(json_is_real(json_object_get(o, "per_dispatch_us")));
    assert_int_equal(json_integer_value(json_object_get(o, "dispatches")), 10);
    json_decref(o);
    assert_null(strstr(err, "validation"));
    assert_int_equal(run(NULL, "bench dispatch --reps 5 --dispatches 4"), 0);
    assert_non_null(strstr(out, "submit+wait"));
    assert_non_null(strstr(out, "host "));
    assert_int_equal(run(NULL, "bench dispatch --dispatches 1"), 2);
}

/* bench ops: every kernel record is followed by its same-run reference. */
static void test_bench_ops(void **state)
{
    (void)state;
    int rc = run(NULL, "bench ops --op adam --size 65536 --reps 2 --json");
    if (rc != 0) fail_msg("bench ops exited %d\n%s\n%s", rc, out, err);
    json_t *a = json_loads(out, 0, NULL);
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 1), "device")),
                        "c-loop");
    assert_true(json_real_value(json_object_get(json_array_get(a, 0), "gbps")) > 0);
    json_decref(a);
    rc = run(NULL, "bench ops --op matmul --size 64 --reps 2 --json");
    if (rc != 0) fail_msg("bench ops exited %d\n%s\n%s", rc, out, err);
    a = json_loads(out, 0, NULL);
    assert_true(json_array_size(a) >= 9); /* NN, NT, TN × 3 dtypes on the device */
    json_t *r0 = json_array_get(a, 0);
    assert_string_equal(json_string_value(json_object_get(r0, "op")), "matmul_nn");
    assert_int_equal(json_array_size(json_object_get(r0, "shape")), 3);
    assert_true(json_real_value(json_object_get(r0, "gflops")) > 0);
    /* f32, f16, bf16 on the device, then (with OpenBLAS) the sgemm reference */
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    for (int i = 0; i < 3; i++) {
        json_t *r = json_array_get(a, (size_t)i);
        assert_string_equal(json_string_value(json_object_get(r, "op")), "matmul_nn");
        assert_string_equal(json_string_value(json_object_get(r, "dtype")), dtypes[i]);
    }
#ifdef VKT_HAVE_OPENBLAS
    assert_string_equal(json_string_value(json_object_get(json_array_get(a, 3), "device")),
                        "openblas-1t");
#endif
    json_decref(a);
    assert_int_equal(run(NULL, "bench ops --op conv"), 2);
}

/* bench comm runs the transport's benchmark program installed next to us. */
static void test_bench_comm(void **state)
{
    (void)state;
    int rc = run(NULL, "bench comm -n 2 --op allreduce --sizes 4K --backend tcp --json");
#ifndef VKT_HAVE_BENCH_COMM /* built without the transport: a clear error instead */
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err, "vkt-bench-comm"));
    return;
#endif
    if (rc != 0) fail_msg("bench comm exited %d\n%s\n%s", rc, out, err);
    json_t *a = json_loads(out, 0, NULL);
    assert_true(json_is_array(a));
    assert_true(json_array_size(a) >= 1);
    json_t *r = json_array_get(a, 0);
    assert_string_equal(json_string_value(json_object_get(r, "backend")), "tcp");
    assert_string_equal(json_string_value(json_object_get(r, "op")), "allreduce");
    assert_int_equal(json_integer_value(json_object_get(r, "nranks")), 2);
    assert_int_equal(json_integer_value(json_object_get(r, "bytes")), 4096);
    assert_true(json_real_value(json_object_get(r, "median_s")) > 0);
    json_decref(a);
}

/* Write text to a fresh file under /tmp; returns its path (static buffer). */
static const char *temp_config(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "/tmp/vkt_cli_%d_%s", (int)getpid(), name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* config check: resolved table or JSON on stdout, warnings on stderr,
 * exit 0 valid / 1 invalid / 2 usage. */
static void test_config_check(void **state)
{
    (void)state;
    char args[512];
    const char *good = temp_config("good.json",
        "{\"train_batch_size\": 32, \"gradient_accumulation_steps\": 2,\n"
        " \"optimizer\": {\"type\": \"Adam\", \"params\": {\"lr\": 3e-4}},\n"
        " \"zero_optimization\": {\"stage\": 2, \"stgae\": 3},\n"
        " \"flops_profiler\": {\"enabled\": true}}\n");
    snprintf(args, sizeof args, "config check '%s' --world 4", good);
    int rc = run(NULL, args);
    if (rc != 0) fail_msg("config check exited %d\n%s\n%s", rc, out, err);
    assert_non_null(strstr(out, "valid for world size 4"));
    assert_non_null(strstr(out, "32 = 4 per rank x 2 accumulation x 4 ranks"));
    assert_non_null(strstr(out, "zero_optimization.stage"));
    assert_non_null(strstr(out, "\"AdamW\"")); /* DeepSpeed's Adam is AdamW */
    assert_non_null(strstr(err, "zero_optimization.stgae: unknown key"));
    assert_non_null(strstr(err, "did you mean 'stage'"));
    assert_non_null(strstr(err, "flops_profiler: not supported by vktrain"));
    snprintf(args, sizeof args, "config check '%s' --world 2 --json", good);
    assert_int_equal(run(NULL, args), 0);
    json_t *o = json_loads(out, 0, NULL);
    if (!o) fail_msg("config check --json is not JSON:\n%s", out);
    assert_int_equal(json_integer_value(json_object_get(o, "train_micro_batch_size_per_gpu")), 8);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "zero_optimization"),
                                                        "stage")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "steps_per_print")), 10);
    json_decref(o);
    snprintf(args, sizeof args, "config check '%s' --world 3", good); /* 32 % (2*3) != 0 */
    assert_int_equal(run(NULL, args), 1);
    assert_non_null(strstr(err, "not a multiple"));
    const char *bad = temp_config("bad.json", "{\"train_batch_size\": 8, \"zero_optimization\":"
                                  " {\"offload_optimizer\": {\"device\": \"cpu\"}}}");
    snprintf(args, sizeof args, "config check '%s'", bad);
    assert_int_equal(run(NULL, args), 1);
    assert_non_null(strstr(err, "zero_optimization.offload_optimizer"));
    assert_non_null(strstr(err, "not supported by vktrain"));
    const char *broken = temp_config("broken.json", "{\n  \"train_batch_size\": 8,\n  oops\n}");
    snprintf(args, sizeof args, "config check '%s'", broken);
    assert_int_equal(run(NULL, args), 1);
    assert_non_null(strstr(err, "line 3"));
    remove(broken);
    assert_int_equal(run(NULL, "config check /nonexistent/ds.json"), 1);
    assert_non_null(strstr(err, "/nonexistent/ds.json"));
    assert_int_equal(run(NULL, "config check"), 2);
    snprintf(args, sizeof args, "config check '%s' --world 0", good);
    assert_int_equal(run(NULL, args), 2);
    assert_int_equal(run(NULL, "config"), 2);
    assert_int_equal(run(NULL, "config frob"), 2);
    assert_int_equal(run(NULL, "config --help"), 0);
    assert_non_null(strstr(out, "usage: vktrain config check"));
    remove(good);
    remove(bad);
}

/* estimate: DeepSpeed's 2 + 2 + 12 bytes per parameter, sharded by stage. */
static void test_estimate(void **state)
{
    (void)state;
    assert_int_equal(run(NULL, "estimate --params 1M --world 4 --json"), 0);
    json_t *o = json_loads(out, 0, NULL);
    if (!o) fail_msg("estimate --json is not JSON:\n%s", out);
    assert_int_equal(json_integer_value(json_object_get(o, "stage0")), 16000000); /* 16 N */
    assert_int_equal(json_integer_value(json_object_get(o, "stage1")), 7000000);  /* 4N + 12N/4 */
    assert_int_equal(json_integer_value(json_object_get(o, "stage2")), 5500000);  /* 2N + 14N/4 */
    assert_int_equal(json_integer_value(json_object_get(o, "stage3")), 4000000);  /* 16N/4 */
    assert_int_equal(json_object_size(o), 4);
    json_decref(o);
    assert_int_equal(run(NULL, "estimate --params 1.5B --world 8 --json"), 0);
    o = json_loads(out, 0, NULL);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "stage0")), 24000000000LL);
    assert_int_equal(json_integer_value(json_object_get(o, "stage1")), 8250000000LL);
    assert_int_equal(json_integer_value(json_object_get(o, "stage2")), 5625000000LL);
    assert_int_equal(json_integer_value(json_object_get(o, "stage3")), 3000000000LL);
    json_decref(o);
    assert_int_equal(run(NULL, "estimate --params 7B --world 64"), 0);
    assert_non_null(strstr(out, "GiB"));
    assert_non_null(strstr(out, "112000000000")); /* stage 0 in bytes */
    assert_int_equal(run(NULL, "estimate --params 7B"), 2);
    assert_int_equal(run(NULL, "estimate --params 0 --world 2"), 2);
    assert_int_equal(run(NULL, "estimate --params 12Q --world 2"), 2);
    assert_int_equal(run(NULL, "estimate --params 1M --world 2.5"), 2);
    assert_int_equal(run(NULL, "estimate --help"), 0);
    assert_non_null(strstr(out, "usage: vktrain estimate"));
}

/* bench overlap runs two real ranks twice and prints the bucket timeline. */
static void test_bench_overlap(void **state)
{
    (void)state;
#ifndef VKT_HAVE_BENCH_COMM /* no transport, no engine: not a benchmark here */
    assert_int_equal(run(NULL, "bench overlap"), 2);
    return;
#endif
    int rc = run(NULL, "bench overlap -n 2 --steps 1 --delay-us 1000");
    if (rc != 0) fail_msg("bench overlap exited %d\n%s\n%s", rc, out, err);
    assert_non_null(strstr(out, "median step  no delay"));
    assert_non_null(strstr(out, "  bucket  elements          ready    reduced"));
    assert_int_equal(run(NULL, "bench overlap -n 1"), 2);
}

/* launch: ranks get their environment and prefixed output; a failing rank
 * stops the others at once and is named; bad arguments are usage errors. */
static void test_launch(void **state)
{
    (void)state;
    int rc = run(NULL, "launch -n 4 -- sh -c 'echo \"r=$RANK l=$LOCAL_RANK w=$WORLD_SIZE "
                       "m=$MASTER_ADDR s=${#VKT_JOB_SECRET}\"'");
    if (rc != 0) fail_msg("launch exited %d\n%s\n%s", rc, out, err);
    for (int r = 0; r < 4; r++) {
        char want[96];
        snprintf(want, sizeof want, "[rank %d] r=%d l=%d w=4 m=127.0.0.1 s=48\n", r, r, r);
        if (!strstr(out, want)) fail_msg("missing '%s' in:\n%s", want, out);
    }
    /* --devices gives each rank its selector */
    assert_int_equal(run(NULL, "launch -n 2 --devices a,b -- sh -c 'echo dev=$VKT_DEVICE'"), 0);
    assert_non_null(strstr(out, "[rank 0] dev=a"));
    assert_non_null(strstr(out, "[rank 1] dev=b"));
    /* rank 1 fails while the others would sleep for a minute */
    double t0 = now_s();
    rc = run(NULL, "launch -n 3 -- sh -c 'if [ $RANK = 1 ]; then echo bye; exit 3; fi; "
                   "sleep 60'");
    assert_int_equal(rc, 1);
    assert_true(now_s() - t0 < 20);
    assert_non_null(strstr(out, "[rank 1] bye"));
    assert_non_null(strstr(err, "rank 1 exited with status 3"));
    assert_int_equal(run(NULL, "launch -n 0 -- true"), 2);
    assert_int_equal(run(NULL, "launch -n 2"), 2);
    assert_int_equal(run(NULL, "launch -n 2 -- /nonexistent/program"), 1);
    assert_non_null(strstr(out, "cannot run /nonexistent/program"));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-TO-vktrain\n", argv[0]);
        return 2;
    }
    exe = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_help), cmocka_unit_test(test_info_table),
        cmocka_unit_test(test_info_json),        cmocka_unit_test(test_selftest_validated),
        cmocka_unit_test(test_device_errors),    cmocka_unit_test(test_bench_dispatch),
        cmocka_unit_test(test_bench_ops),        cmocka_unit_test(test_bench_comm),
        cmocka_unit_test(test_config_check),     cmocka_unit_test(test_estimate),
        cmocka_unit_test(test_launch),
        cmocka_unit_test(test_bench_overlap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
