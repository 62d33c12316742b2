/* The fault matrix (issue 9): every fault end to end, through `vktrain`
 * processes on a small data set the test writes, asserting what the user
 * sees (exit status, the key words of the message) and that nothing the
 * user owns is lost (the last checkpoint still resumes).
 *
 * Ranks run either under `vktrain launch -n 2` (what users type; the
 * launcher stops the others when one fails) or as two plain processes with
 * RANK/WORLD_SIZE/MASTER_* set (as srun or torchrun would start them, no
 * watchdog: the survivor itself must end with an error naming the peer,
 * within comm_timeout_s, never hang). Faults that cannot be caused from
 * outside at an exact point are injected with the test-only
 * VKT_INJECT_FAULT (src/core/fault.c). Every process runs under a deadline.
 *
 *   test_faults_cli VKTRAIN GROUP    GROUP: ranks, peers, ckpt, disk, input, device */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "idx_fixture.h"

/* vktrain.comm_timeout_s: TIMEOUT_S in t0.json, for the faults that wait it
 * out (a stopped rank, a wrong secret); LONG_TIMEOUT_S in cN.json, where a
 * killed rank shows at once as a closed connection: the engine's GPU waits
 * share this deadline, and a first backward on a loaded 2-core machine can
 * take seconds. */
#define TIMEOUT_S 5
#define LONG_TIMEOUT_S 30
#define SLACK_S 6    /* start-up and scheduling on a loaded 2-core machine */
#define LIMIT_S 120.0 /* no process of this suite may run longer (cold caches, loaded CI) */

/* `vktrain train` on the test's data set, and the same under
 * `vktrain launch -n 2 -- vktrain train ...` */
#define TRAIN "train --data . --hidden 8 "
#define LAUNCH2 "launch -n 2 -- %s " TRAIN

static const char *exe;
static char dir[256];
static char text[1 << 17];

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void slurp(const char *name, char *buf, size_t cap)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

static void write_text(const char *name, const char *s)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(s, f);
    fclose(f);
}

static bool exists(const char *name)
{
    char path[400];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &sb) == 0;
}

/* Assert that the log file holds every one of the NULL-terminated words,
 * printing it when not. */
static void expect_in(const char *log, ...)
{
    slurp(log, text, sizeof text);
    va_list ap;
    va_start(ap, log);
    for (const char *w; (w = va_arg(ap, const char *));) {
        if (strstr(text, w)) continue;
        fprintf(stderr, "--- %s lacks '%s':\n%s\n---\n", log, w, text);
        fail_msg("'%s' not in %s", w, log);
    }
    va_end(ap);
}
#define EXPECT_IN(log, ...) expect_in(log, __VA_ARGS__, (const char *)NULL)

static void expect_not_in(const char *log, const char *w)
{
    slurp(log, text, sizeof text);
    if (strstr(text, w)) fprintf(stderr, "--- %s:\n%s\n---\n", log, text);
    assert_null(strstr(text, w));
}

/* The one line of the log holding word, for the report (stderr). */
static void show(const char *log, const char *word)
{
    slurp(log, text, sizeof text);
    const char *p = strstr(text, word);
    if (!p) return;
    while (p > text && p[-1] != '\n') p--;
    fprintf(stderr, "  %s: %.*s\n", log, (int)strcspn(p, "\n"), p);
}

/* ---- data ------------------------------------------------------------- */


/* cN.json: micro-batch 8, AdamW, ZeRO stage N, comm timeout LONG_TIMEOUT_S;
 * t0.json: stage 0, TIMEOUT_S. */
static void write_configs(void)
{
    char name[32], json[512];
    for (int s = 0; s <= 3; s++) {
        snprintf(name, sizeof name, s < 3 ? "c%d.json" : "t0.json", s);
        snprintf(json, sizeof json,
                 "{\"train_micro_batch_size_per_gpu\": 8, \"gradient_accumulation_steps\": 1,"
                 " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
                 " \"zero_optimization\": {\"stage\": %d},"
                 " \"vktrain\": {\"comm_timeout_s\": %d, \"seed\": 3}}", s % 3,
                 s < 3 ? LONG_TIMEOUT_S : TIMEOUT_S);
        write_text(name, json);
    }
}

static double t_setup;

static int setup(void **state)
{
    (void)state;
    t_setup = now_s();
    snprintf(dir, sizeof dir, "/tmp/vkt-test-faults-XXXXXX");
    assert_non_null(mkdtemp(dir));
    tidx_write(dir, "train", 256, 1, false);
    tidx_write(dir, "t10k", 64, 2, false);
    write_configs();
    /* Once per group: one short run compiles the shaders into the build's
     * caches, so no timed wait below includes a cold compile. */
    static bool warm;
    if (!warm) {
        char path[400];
        snprintf(path, sizeof path, "cd %s && %s " TRAIN "--config c0.json --steps 2 > warm.log "
                 "2>&1", dir, exe);
        assert_int_equal(system(path), 0);
        warm = true;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fprintf(stderr, "  (%.1f s)\n", now_s() - t_setup);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "%s/full", dir);
    umount2(cmd, MNT_DETACH); /* the disk-full case's tmpfs, if a failure left it */
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- processes -------------------------------------------------------- */

typedef struct proc {
    pid_t pid;
    double t0, took;
} proc;

/* Start "cd DIR && env ENV vktrain ARGS > LOG 2>&1" as its own process. */
static proc start(const char *log, const char *env, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "cd %s && exec env %s %s %s > %s 2>&1", dir, env ? env : "", exe,
             args, log);
    proc p = {.t0 = now_s()};
    p.pid = fork();
    assert_true(p.pid >= 0);
    if (p.pid == 0) {
        setpgid(0, 0); /* a launcher and its ranks go together */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return p;
}

/* Wait for p at most limit seconds. Returns its exit status, 128 + the
 * signal that killed it, or -1 if it was still running (then its whole
 * group is killed). */
static int finish(proc *p, double limit)
{
    int status = 0;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) break;
        if (now_s() - p->t0 > limit) {
            kill(-p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            p->took = now_s() - p->t0;
            fprintf(stderr, "  (still running after %.0f s: killed)\n", limit);
            return -1;
        }
        usleep(20000);
    }
    p->took = now_s() - p->t0;
    kill(-p->pid, SIGKILL); /* whatever it left behind */
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A port the kernel considers free on 127.0.0.1 now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* The environment of rank r of a 2-rank job started without a launcher. */
static const char *rank_env(char *buf, size_t cap, int r, int port, const char *secret,
                            const char *extra)
{
    snprintf(buf, cap, "RANK=%d LOCAL_RANK=%d WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 "
             "MASTER_ADDR=127.0.0.1 MASTER_PORT=%d VKT_JOB_SECRET=%s LP_NUM_THREADS=1 %s",
             r, r, port, secret, extra ? extra : "");
    return buf;
}

/* Run `vktrain ARGS` to its end (LIMIT_S at most); returns the status. */
static int run(const char *log, const char *env, const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    proc p = start(log, env, "%s", args);
    return finish(&p, LIMIT_S);
}


static int launch2(const char *log, const char *env, const char *more)
{
    return run(log, env, LAUNCH2 "%s", exe, more);
}

/* The run directory still resumes: a clean 2-rank run from ck goes on from
 * update `from` to the end. */
static void expect_resumes(const char *cfg, uint64_t from, const char *extra)
{
    char more[256], want[64];
    snprintf(more, sizeof more, "--config %s --steps 10 --ckpt-dir ck --save-every 2 --resume %s",
             cfg, extra);
    int rc = launch2("resume.log", NULL, more);
    snprintf(want, sizeof want, "resumed from ck at update %llu", (unsigned long long)from);
    EXPECT_IN("resume.log", want, "saved ck/step-000010");
    assert_int_equal(rc, 0);
}

/* ---- 1-4: ranks that die or stop --------------------------------------- */

/* 1. Rank 1 is killed in the forward of update 3, under the launcher: it
 * names the rank and the signal, stops rank 0, exits 1; update 2's
 * checkpoint resumes. */
static void test_kill_forward(void **state)
{
    (void)state;
    int rc = launch2("kill.log", "VKT_INJECT_FAULT=kill_forward:3@1",
                     "--config c0.json --steps 10 --ckpt-dir ck --save-every 2");
    show("kill.log", "vktrain launch:");
    EXPECT_IN("kill.log", "vktrain launch: rank 1 was killed by signal 9", "stopped the other ranks",
              "saved ck/step-000002");
    assert_int_equal(rc, 1);
    expect_not_in("kill.log", "step-000004");
    expect_resumes("c0.json", 2, "");
}

/* Two ranks without a launcher; rank 1 has fault and ends with victim_rc
 * (128 + SIGKILL, or 128 + SIGSTOP: frozen). Rank 0 must fail by itself
 * with words, within limit seconds of rank 1's end or stop. */
static void survivor_case(const char *cfg, const char *fault, const char *more, int victim_rc,
                          double limit, const char *const *words)
{
    char e0[512], e1[512], f[128];
    int port = free_port();
    snprintf(f, sizeof f, "VKT_INJECT_FAULT=%s", fault);
    proc r0 = start("r0.log", rank_env(e0, sizeof e0, 0, port, "s3cret", NULL),
                    TRAIN "--config %s --steps 10 --ckpt-dir ck %s", cfg, more);
    proc r1 = start("r1.log", rank_env(e1, sizeof e1, 1, port, "s3cret", f),
                    TRAIN "--config %s --steps 10 --ckpt-dir ck %s", cfg, more);
    /* watch both: when rank 1 dies or stops, when rank 0 ends */
    int s0 = 0, s1 = 0;
    double t1 = 0, t0 = 0;
    while (!t0 && now_s() - r0.t0 < LIMIT_S) {
        if (!t1 && waitpid(r1.pid, &s1, WNOHANG | WUNTRACED) == r1.pid) t1 = now_s();
        if (waitpid(r0.pid, &s0, WNOHANG) == r0.pid) t0 = now_s();
        usleep(10000);
    }
    if (!t0) kill(-r0.pid, SIGKILL), waitpid(r0.pid, &s0, 0);
    kill(-r1.pid, SIGKILL);
    if (!t1 || WIFSTOPPED(s1)) waitpid(r1.pid, &s1, 0);
    show("r0.log", "vktrain: train");
    fprintf(stderr, "  rank 0 failed %.1f s after rank 1 %s\n", t0 - t1,
            victim_rc == 128 + SIGSTOP ? "stopped" : "died");
    assert_true(t0 > 0 && t1 > 0);
    if (victim_rc == 128 + SIGSTOP)
        assert_true(t1 < t0); /* still frozen when rank 0 gave up */
    else
        assert_int_equal(WIFSIGNALED(s1) ? 128 + WTERMSIG(s1) : WEXITSTATUS(s1), victim_rc);
    for (; *words; words++) EXPECT_IN("r0.log", *words);
    assert_true(WIFEXITED(s0));
    assert_int_equal(WEXITSTATUS(s0), 1);
    assert_true(t0 - t1 < limit);
}

/* 2. Rank 1 is killed as its gradient reduction starts (update 3) at ZeRO
 * stage 2: rank 0's reduce-scatter fails inside the slot backward and it
 * exits 1 naming rank 1, not hanging. Small buckets of 4 layers make a
 * later backward segment wait for an earlier bucket's reduction, so the
 * failure comes up inside the backward (the engine's slots_abort), not at
 * the step. */
static void test_kill_allreduce_zero2(void **state)
{
    (void)state;
    write_text("z2.json", "{\"train_micro_batch_size_per_gpu\": 8, \"optimizer\": {\"type\": "
               "\"AdamW\", \"params\": {\"lr\": 0.01}}, \"zero_optimization\": {\"stage\": 2, "
               "\"reduce_bucket_size\": 100}, \"vktrain\": {\"comm_timeout_s\": 15}}");
    static const char *const w[] = {"vktrain: train: engine: backward segment ",
                                    "gradient reduce-scatter", "rank 1 closed its connection",
                                    "the last complete checkpoint is ck/step-000002", NULL};
    survivor_case("z2.json", "kill_backward:3", "--save-every 2 --hidden 16,16,16", 128 + SIGKILL,
                  SLACK_S, w);
    expect_resumes("z2.json", 2, "--hidden 16,16,16");
}

/* 3. Rank 1 is killed while saving update 4's checkpoint (after writing
 * its shard, before the commit): rank 0 fails naming rank 1; latest still
 * names update 2, which resumes (and the half-written step is replaced). */
static void test_kill_during_save(void **state)
{
    (void)state;
    static const char *const w[] = {"vktrain: train: saving a checkpoint", "rank 1 closed its connection",
                                    "the last complete checkpoint is ck/step-000002",
                                    "--resume continues from it", NULL};
    survivor_case("c1.json", "kill_save:2", "--save-every 2", 128 + SIGKILL, SLACK_S, w);
    slurp("ck/latest", text, sizeof text);
    assert_string_equal(text, "step-000002\n");
    assert_false(exists("ck/step-000004"));
    assert_true(exists("ck/step-000004.partial")); /* what the save left, replaced below */
    expect_resumes("c1.json", 2, "");
    assert_false(exists("ck/step-000004.partial"));
}

/* 4. Rank 1 stops (SIGSTOP) in the forward of update 3 and stays stopped
 * past comm_timeout_s: rank 0 reports a timeout naming rank 1. */
static void test_stopped_rank(void **state)
{
    (void)state;
    static const char *const w[] = {"vktrain: train: ", "nothing received from rank 1 for 5 s",
                                    "raise comm_timeout_s", NULL};
    survivor_case("t0.json", "stop_forward:3", "", 128 + SIGSTOP, TIMEOUT_S + SLACK_S, w);
}

/* ---- 5-6: peers that do not belong ------------------------------------- */

/* 5. Something that is not a rank connects to the job's port and sends
 * garbage before the real rank 1 arrives: rank 0 refuses that connection
 * (saying so, naming the address and telling it from a wrong job secret)
 * and the job trains to the end. */
static void test_garbage_peer(void **state)
{
    (void)state;
    char e0[512], e1[512];
    int port = free_port();
    proc r0 = start("r0.log", rank_env(e0, sizeof e0, 0, port, "s3cret", NULL),
                    TRAIN "--config c0.json --steps 4");
    /* connect as soon as rank 0 listens */
    int fd = -1;
    for (double t0 = now_s(); now_s() - t0 < 20; usleep(20000)) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) break;
        close(fd);
        fd = -1;
    }
    assert_true(fd >= 0);
    uint8_t junk[4096];
    uint64_t s = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        junk[i] = (uint8_t)(s >> 56);
    }
    ssize_t sent = send(fd, junk, sizeof junk, MSG_NOSIGNAL);
    assert_true(sent > 0);
    usleep(300000);
    close(fd);
    proc r1 = start("r1.log", rank_env(e1, sizeof e1, 1, port, "s3cret", NULL),
                    TRAIN "--config c0.json --steps 4");
    int rc0 = finish(&r0, LIMIT_S), rc1 = finish(&r1, LIMIT_S);
    show("r0.log", "refused");
    EXPECT_IN("r0.log", "vktrain: store: refused connection from 127.0.0.1: not a vktrain "
              "store client (4096 bytes that are no handshake; a port scanner or another "
              "program?)", "done: 4 updates");
    expect_not_in("r0.log", "wrong job secret");
    assert_int_equal(rc0, 0);
    assert_int_equal(rc1, 0);
}

/* 6. Rank 1 has another job secret: it is refused and says to give every
 * rank the same VKT_JOB_SECRET; rank 0 gives up waiting for rank 1. */
static void test_wrong_secret(void **state)
{
    (void)state;
    char e0[512], e1[512];
    int port = free_port();
    proc r0 = start("r0.log", rank_env(e0, sizeof e0, 0, port, "s3cret", NULL),
                    TRAIN "--config t0.json --steps 4");
    proc r1 = start("r1.log", rank_env(e1, sizeof e1, 1, port, "another", NULL),
                    TRAIN "--config t0.json --steps 4");
    int rc1 = finish(&r1, LIMIT_S), rc0 = finish(&r0, LIMIT_S);
    show("r1.log", "vktrain: train");
    show("r0.log", "vktrain: train");
    EXPECT_IN("r1.log", "vktrain: train: joining the job", "job secret", "VKT_JOB_SECRET");
    EXPECT_IN("r0.log", "vktrain: train: joining the job", "rank 1");
    assert_int_equal(rc1, 1);
    assert_int_equal(rc0, 1);
}

/* ---- 3b, 8-11: checkpoints -------------------------------------------- */

/* A 2-rank run that saves update 4 into ck. */
static void save_step4(const char *cfg)
{
    char more[128];
    snprintf(more, sizeof more, "--config %s --steps 4 --ckpt-dir ck", cfg);
    int rc = launch2("save.log", NULL, more);
    EXPECT_IN("save.log", "saved ck/step-000004");
    assert_int_equal(rc, 0);
}

/* Resuming from the damaged ck fails on every rank with words; launch
 * exits 1. */
static void expect_resume_fails(const char *more, const char *const *words)
{
    char args[256];
    snprintf(args, sizeof args, "--config c1.json --steps 8 --ckpt-dir ck --resume %s", more);
    int rc = launch2("bad.log", NULL, args);
    show("bad.log", "vktrain: train");
    for (; *words; words++) EXPECT_IN("bad.log", *words);
    EXPECT_IN("bad.log", "vktrain launch: rank ", "ck/latest names a checkpoint this run cannot load");
    assert_int_equal(rc, 1);
    expect_not_in("bad.log", "saved ck/");
}

/* 8. A flipped byte in rank 1's shard: the checksum names the file. */
static void test_ckpt_corrupt(void **state)
{
    (void)state;
    save_step4("c1.json");
    char path[400];
    snprintf(path, sizeof path, "%s/ck/step-000004/rank_00001.safetensors", dir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -9, SEEK_END);
    int c = fgetc(f);
    fseek(f, -9, SEEK_END);
    fputc(c ^ 0x40, f);
    fclose(f);
    static const char *const w[] = {"vktrain: train: resuming",
                                    "ck/step-000004/rank_00001.safetensors",
                                    "fails its checksum", NULL};
    expect_resume_fails("", w);
}

/* 9. Rank 0's shard cut short. */
static void test_ckpt_truncated(void **state)
{
    (void)state;
    save_step4("c1.json");
    char path[400];
    snprintf(path, sizeof path, "%s/ck/step-000004/rank_00000.safetensors", dir);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    static const char *const w[] = {"vktrain: train: resuming",
                                    "ck/step-000004/rank_00000.safetensors", "is truncated", NULL};
    expect_resume_fails("", w);
}

/* 10. A checkpoint of another model (hidden 8) resumed as hidden 16. */
static void test_ckpt_other_model(void **state)
{
    (void)state;
    save_step4("c1.json");
    static const char *const w[] = {"vktrain: train: resuming", "ck/step-000004", NULL};
    expect_resume_fails("--hidden 16", w);
}

/* 11. Saved by 2 ranks at ZeRO-2, resumed by 1 process (re-sharded on
 * load), then by 2 again: both continue where the last one stopped. */
static void test_ckpt_other_world(void **state)
{
    (void)state;
    save_step4("c2.json");
    int rc = run("one.log", NULL, TRAIN "--config c2.json --steps 6 --ckpt-dir ck --resume");
    EXPECT_IN("one.log", "on 1 rank", "resumed from ck at update 4", "saved ck/step-000006");
    assert_int_equal(rc, 0);
    rc = launch2("two.log", NULL, "--config c2.json --steps 8 --ckpt-dir ck --resume");
    EXPECT_IN("two.log", "on 2 ranks", "resumed from ck at update 6", "saved ck/step-000008");
    assert_int_equal(rc, 0);
}

/* ---- 7: disk full ----------------------------------------------------- */

/* A private mount namespace with a 1 MiB tmpfs at DIR/full (root here;
 * else a user namespace that maps this user to root). */
static void mount_small_disk(void)
{
    if (unshare(CLONE_NEWNS) != 0) {
        uid_t uid = getuid();
        gid_t gid = getgid();
        assert_int_equal(unshare(CLONE_NEWUSER | CLONE_NEWNS), 0);
        char m[64];
        snprintf(m, sizeof m, "0 %u 1", (unsigned)uid);
        FILE *f = fopen("/proc/self/uid_map", "w");
        assert_non_null(f);
        fputs(m, f);
        fclose(f);
        f = fopen("/proc/self/setgroups", "w");
        if (f) fputs("deny", f), fclose(f);
        snprintf(m, sizeof m, "0 %u 1", (unsigned)gid);
        f = fopen("/proc/self/gid_map", "w");
        assert_non_null(f);
        fputs(m, f);
        fclose(f);
    }
    assert_int_equal(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
    char path[400];
    snprintf(path, sizeof path, "%s/full", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(mount("tmpfs", path, "tmpfs", 0, "size=1m"), 0);
}

/* Fill DIR/full except about keep bytes. */
static void fill_disk(const char *name, long keep)
{
    char path[400];
    snprintf(path, sizeof path, "%s/full/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    static char block[4096];
    long n = 0;
    while (write(fd, block, sizeof block) == (ssize_t)sizeof block) n += (long)sizeof block;
    assert_int_equal(errno, ENOSPC);
    assert_int_equal(ftruncate(fd, n > keep ? n - keep : 0), 0);
    close(fd);
}

/* 7. The disk fills up while update 8's checkpoint is saved: the save
 * fails naming the file and the cause; latest still names update 4, which
 * resumes once there is space again. */
static void test_disk_full(void **state)
{
    (void)state;
    mount_small_disk();
    int rc = launch2("save.log", NULL, "--config c1.json --steps 4 --ckpt-dir full/ck --hidden 64");
    EXPECT_IN("save.log", "saved full/ck/step-000004");
    assert_int_equal(rc, 0);
    fill_disk("filler", 8192); /* room for model.json, not for a checkpoint */
    rc = launch2("full.log", NULL,
                 "--config c1.json --steps 8 --ckpt-dir full/ck --hidden 64 --resume");
    show("full.log", "vktrain: train");
    EXPECT_IN("full.log", "resumed from full/ck at update 4", "vktrain: train: saving a checkpoint",
              "full/ck/step-000008", "No space left on device",
              "the last complete checkpoint is full/ck/step-000004");
    assert_int_equal(rc, 1);
    slurp("full/ck/latest", text, sizeof text);
    assert_string_equal(text, "step-000004\n");
    char path[400];
    snprintf(path, sizeof path, "%s/full/filler", dir);
    assert_int_equal(unlink(path), 0);
    rc = launch2("again.log", NULL,
                 "--config c1.json --steps 8 --ckpt-dir full/ck --hidden 64 --resume");
    EXPECT_IN("again.log", "resumed from full/ck at update 4", "saved full/ck/step-000008");
    assert_int_equal(rc, 0);
}

/* ---- 12-13: input ----------------------------------------------------- */

/* 12. The training images cut short: every rank names the file. */
static void test_data_truncated(void **state)
{
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    assert_int_equal(truncate(path, 16 + 256 * 16 - 100), 0);
    int rc = launch2("data.log", NULL, "--config c0.json --steps 4");
    show("data.log", "vktrain: ");
    EXPECT_IN("data.log", "vktrain launch: rank ", "train-images-idx3-ubyte", "truncated");
    assert_int_equal(rc, 1);
}

/* 13. Five ways to get the config wrong; each is refused before training
 * with the key (or the line) and what to do. */
static void test_config_wrong(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *words[3];
    } cases[] = {
        /* an unsupported feature that would change the result */
        {"{\"train_micro_batch_size_per_gpu\": 8, \"zero_optimization\": {\"stage\": 1, "
         "\"offload_optimizer\": {\"device\": \"cpu\"}}}",
         {"zero_optimization.offload_optimizer", "not supported by vktrain", "remove it"}},
        /* the wrong type */
        {"{\"train_micro_batch_size_per_gpu\": \"8\"}",
         {"train_micro_batch_size_per_gpu", "\"8\"", NULL}},
        /* a batch identity that does not add up (8 * 1 * 1 rank != 20) */
        {"{\"train_batch_size\": 20, \"train_micro_batch_size_per_gpu\": 8, "
         "\"gradient_accumulation_steps\": 1}",
         {"train_batch_size", "20", NULL}},
        /* a value out of range */
        {"{\"train_micro_batch_size_per_gpu\": 8, \"zero_optimization\": {\"stage\": 4}}",
         {"zero_optimization.stage", "4", NULL}},
        /* not JSON */
        {"{\"train_micro_batch_size_per_gpu\": 8,, }", {"bad.json", "line 1", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text("bad.json", cases[i].json);
        int rc = run("cfg.log", NULL, TRAIN "--config bad.json --steps 2");
        show("cfg.log", "vktrain: ");
        EXPECT_IN("cfg.log", "vktrain: train: config: ", "bad.json");
        for (int k = 0; k < 3 && cases[i].words[k]; k++) EXPECT_IN("cfg.log", cases[i].words[k]);
        expect_not_in("cfg.log", "vktrain train: mlp");
        assert_int_equal(rc, 1);
    }
}

/* ---- 14-15: numbers and the device ------------------------------------ */

/* 14. fp16 with a loss scale far too large and a high floor: every step
 * overflows until the scale reaches min_loss_scale; the message names the
 * step and suggests bf16. */
static void test_fp16_overflow(void **state)
{
    (void)state;
    write_text("fp16.json", "{\"train_micro_batch_size_per_gpu\": 8, \"optimizer\": "
               "{\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}}, \"fp16\": {\"enabled\": true, "
               "\"initial_scale_power\": 32, \"min_loss_scale\": 1e9, \"hysteresis\": 1}}");
    int rc = run("fp16.log", NULL, TRAIN "--config fp16.json --steps 20");
    show("fp16.log", "vktrain: ");
    EXPECT_IN("fp16.log", "vktrain: train: ", "fp16 gradients overflowed at update",
              "min_loss_scale", "bf16");
    assert_int_equal(rc, 1);
}

/* 15a. The device runs out of memory (injected into its first allocation,
 * the model's memory pool): the message names the device, the size, the
 * cause and the fix. */
static void test_device_oom(void **state)
{
    (void)state;
    int rc = run("oom.log", "VKT_INJECT_FAULT=oom:1", TRAIN "--config c0.json --steps 4");
    show("oom.log", "vktrain: train");
    EXPECT_IN("oom.log", "vktrain: train: creating the model: allocating",
              "VK_ERROR_OUT_OF_DEVICE_MEMORY", "lower the batch size");
    assert_int_equal(rc, 1);
}

/* 15b. Rank 1's device is lost mid-training (its 40th queue submit): it
 * exits 1 naming the device, launch stops rank 0; the last checkpoint
 * resumes. */
static void test_device_lost(void **state)
{
    (void)state;
    int rc = launch2("lost.log", "VKT_INJECT_FAULT=device_lost:40@1",
                     "--config c0.json --steps 10 --ckpt-dir ck --save-every 2");
    show("lost.log", "vktrain: train");
    show("lost.log", "vktrain launch: ");
    EXPECT_IN("lost.log", "[rank 1] vktrain: train", "VK_ERROR_DEVICE_LOST",
              "[rank 1] vktrain: train: the last complete checkpoint is ck/step-",
              "vktrain launch: rank 1 exited with status 1", "saved ck/step-000002");
    assert_int_equal(rc, 1);
    /* the last checkpoint it reported resumes */
    const char *p = text, *last = NULL;
    slurp("lost.log", text, sizeof text);
    while ((p = strstr(p, "saved ck/step-"))) last = p++;
    assert_non_null(last);
    expect_resumes("c0.json", strtoull(last + 14, NULL, 10), "");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_faults_cli PATH/TO/vktrain GROUP\n");
        return 2;
    }
    exe = argv[1];
    const char *group = argv[2];
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    if (!strcmp(group, "ranks")) {
        const struct CMUnitTest t[] = {T(test_kill_forward), T(test_kill_allreduce_zero2),
                                       T(test_kill_during_save), T(test_stopped_rank)};
        return cmocka_run_group_tests_name("ranks", t, NULL, NULL);
    }
    if (!strcmp(group, "peers")) {
        const struct CMUnitTest t[] = {T(test_garbage_peer), T(test_wrong_secret)};
        return cmocka_run_group_tests_name("peers", t, NULL, NULL);
    }
    if (!strcmp(group, "ckpt")) {
        const struct CMUnitTest t[] = {T(test_ckpt_corrupt), T(test_ckpt_truncated),
                                       T(test_ckpt_other_model), T(test_ckpt_other_world)};
        return cmocka_run_group_tests_name("ckpt", t, NULL, NULL);
    }
    if (!strcmp(group, "disk")) {
        const struct CMUnitTest t[] = {T(test_disk_full)};
        return cmocka_run_group_tests_name("disk", t, NULL, NULL);
    }
    if (!strcmp(group, "input")) {
        const struct CMUnitTest t[] = {T(test_data_truncated), T(test_config_wrong)};
        return cmocka_run_group_tests_name("input", t, NULL, NULL);
    }
    if (!strcmp(group, "device")) {
        const struct CMUnitTest t[] = {T(test_fp16_overflow), T(test_device_oom),
                                       T(test_device_lost)};
        return cmocka_run_group_tests_name("device", t, NULL, NULL);
    }
    fprintf(stderr, "test_faults_cli: unknown group '%s'\n", group);
    return 2;
}
