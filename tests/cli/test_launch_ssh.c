/* Ranks that find each other without a launcher, and vktrain launch over
 * real ssh:
 *   - two env_rank processes with torchrun-style, SLURM (srun) and Open MPI
 *     (mpirun) variables set by hand join one job and all-reduce;
 *   - Debian's sshd, started here on a free port with its own host key and a
 *     client key made for the test, runs the ranks of `vktrain launch
 *     --hostfile` (localhost slots=2): both join, a failing remote rank makes
 *     launch exit 1 naming it and leaves no remote process behind, and
 *     --include picks slots.
 * If sshd cannot be started the test fails and says why.
 *   test_launch_ssh PATH-TO-vktrain PATH-TO-env_rank */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static const char *vktrain, *env_rank;
static char dir[64];          /* this run's temporary directory */
static pid_t sshd = -1;
static int ssh_port;
static char ssh_opts[512];    /* the client's options: the test key, no known_hosts */
static char out[1 << 16], err[1 << 16];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

/* Whether port can be bound on 127.0.0.1 right now. */
static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* A free port in [lo, lo + span). */
static int pick_port(int lo, int span)
{
    for (int i = 0; i < 1000; i++) {
        int p = lo + (int)((unsigned)rand() % (unsigned)span);
        if (port_free(p)) return p;
    }
    fail_msg("no free port in %d..%d", lo, lo + span - 1);
    return -1;
}

/* Run a shell command line; its stdout and stderr land in out and err. */
static int run(const char *fmt, ...)
{
    char cmd[4096], o[128], e[128];
    snprintf(o, sizeof o, "%s/out", dir);
    snprintf(e, sizeof e, "%s/err", dir);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n + 300 < sizeof cmd);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " >%s 2>%s", o, e);
    int st = system(cmd);
    slurp(o, out, sizeof out);
    slurp(e, err, sizeof err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* ------------------------------------------------- environments by hand -- */

/* Run env_rank as `world` processes, rank r with exactly the environment
 * common + each[r] (nothing inherited); all must succeed and print `want`
 * (with %d for the rank). */
static void run_ranks(int world, const char *common, const char *const *each, const char *want)
{
    char cmd[4096] = "";
    size_t k = 0;
    for (int r = 0; r < world; r++)
        k += (size_t)snprintf(cmd + k, sizeof cmd - k,
                              "env -i PATH=/usr/bin:/bin VKT_JOB_SECRET=t-%d "
                              "VKT_COMM_TIMEOUT_S=30 %s %s '%s' >%s/rank%d 2>&1 & p%d=$!; ",
                              (int)getpid(), common, each[r], env_rank, dir, r, r);
    k += (size_t)snprintf(cmd + k, sizeof cmd - k, "s=0; ");
    for (int r = 0; r < world; r++)
        k += (size_t)snprintf(cmd + k, sizeof cmd - k, "wait $p%d || s=1; ", r);
    snprintf(cmd + k, sizeof cmd - k, "(exit $s)");
    int rc = run("%s", cmd);
    for (int r = 0; r < world; r++) {
        char path[128], log[4096], line[256];
        snprintf(path, sizeof path, "%s/rank%d", dir, r);
        slurp(path, log, sizeof log);
        snprintf(line, sizeof line, want, r);
        if (rc != 0 || !strstr(log, line))
            fail_msg("rank %d (exit %d of all): expected '%s' in:\n%s", r, rc, line, log);
    }
}

static void test_torchrun_env(void **state)
{
    (void)state;
    char common[128];
    snprintf(common, sizeof common, "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=%d",
             pick_port(20000, 20000));
    const char *each[] = {"RANK=0 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2",
                          "RANK=1 LOCAL_RANK=1 LOCAL_WORLD_SIZE=2"};
    run_ranks(2, common, each, "source=torchrun rank=%d world=2");
    char log[4096], path[128];
    snprintf(path, sizeof path, "%s/rank1", dir);
    slurp(path, log, sizeof log);
    assert_non_null(strstr(log, "sum=3"));
}

/* srun's variables; the port follows from SLURM_JOB_ID (20000 + id % 20000). */
static void test_slurm_env(void **state)
{
    (void)state;
    int port = pick_port(20000, 20000);
    char common[256];
    snprintf(common, sizeof common, "SLURM_NTASKS=2 SLURM_NODEID=0 SLURM_STEP_TASKS_PER_NODE=2 "
             "SLURM_STEP_ID=0 SLURM_NODELIST=localhost SLURM_JOB_ID=%d", 40000 + (port - 20000));
    const char *each[] = {"SLURM_PROCID=0 SLURM_LOCALID=0", "SLURM_PROCID=1 SLURM_LOCALID=1"};
    run_ranks(2, common, each, "source=slurm rank=%d world=2");
    for (int r = 0; r < 2; r++) {
        char path[128], log[4096], want[128];
        snprintf(path, sizeof path, "%s/rank%d", dir, r);
        slurp(path, log, sizeof log);
        snprintf(want, sizeof want, "local=%d/2 master=localhost:%d sum=3", r, port);
        if (!strstr(log, want)) fail_msg("rank %d: expected '%s' in:\n%s", r, want, log);
    }
}

static void test_ompi_env(void **state)
{
    (void)state;
    char common[256];
    snprintf(common, sizeof common, "OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_LOCAL_SIZE=2 "
             "MASTER_PORT=%d", pick_port(20000, 20000));
    const char *each[] = {"OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_LOCAL_RANK=0",
                          "OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_LOCAL_RANK=1"};
    run_ranks(2, common, each, "source=mpirun rank=%d world=2");
    char path[128], log[4096];
    snprintf(path, sizeof path, "%s/rank0", dir);
    slurp(path, log, sizeof log);
    assert_non_null(strstr(log, "master=127.0.0.1:"));
    assert_non_null(strstr(log, "sum=3"));
}

/* ------------------------------------------------------------ real sshd -- */

static void start_sshd(void)
{
    if (sshd > 0) return;
    mkdir("/run/sshd", 0755); /* sshd's privilege separation directory */
    int rc = run("ssh-keygen -q -t ed25519 -N '' -f %s/host_key && "
                 "ssh-keygen -q -t ed25519 -N '' -f %s/user_key && "
                 "cp %s/user_key.pub %s/authorized_keys", dir, dir, dir, dir);
    if (rc != 0) fail_msg("ssh-keygen failed (%d; install openssh-client): %s", rc, err);
    char conf[128];
    snprintf(conf, sizeof conf, "%s/sshd_config", dir);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "HostKey %s/host_key\nAuthorizedKeysFile %s/authorized_keys\nStrictModes no\n"
               "PidFile none\nUsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n"
               "KbdInteractiveAuthentication no\nListenAddress 127.0.0.1\n", dir, dir);
    fclose(f);
    ssh_port = pick_port(30000, 10000);
    char port[16], log[128];
    snprintf(port, sizeof port, "%d", ssh_port);
    snprintf(log, sizeof log, "%s/sshd.log", dir);
    sshd = fork();
    if (sshd == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* no sshd left behind if the test is killed */
        FILE *lf = freopen(log, "w", stderr);
        if (!lf) _exit(126);
        execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", conf, "-p", port,
              (char *)NULL);
        fprintf(stderr, "cannot run /usr/sbin/sshd: %s (install openssh-server)\n",
                strerror(errno));
        _exit(127);
    }
    assert_true(sshd > 0);
    for (double t0 = now_s(); port_free(ssh_port); usleep(50 * 1000)) {
        int st;
        if (waitpid(sshd, &st, WNOHANG) == sshd || now_s() - t0 > 10) {
            char text[4096];
            slurp(log, text, sizeof text);
            sshd = -1;
            fail_msg("sshd did not start listening on 127.0.0.1:%d; its log:\n%s", ssh_port,
                     text);
        }
    }
    snprintf(ssh_opts, sizeof ssh_opts, "-i %s/user_key -o StrictHostKeyChecking=no "
             "-o UserKnownHostsFile=/dev/null", dir);
    char hosts[128];
    snprintf(hosts, sizeof hosts, "%s/hostfile", dir);
    f = fopen(hosts, "w");
    assert_non_null(f);
    fprintf(f, "# the test's sshd\nlocalhost slots=2\n");
    fclose(f);
    /* ssh itself must work before launch is blamed */
    if (run("ssh -T -o BatchMode=yes -p %d %s localhost true", ssh_port, ssh_opts) != 0)
        fail_msg("ssh to the test's sshd failed: %s", err);
}

static void test_ssh_hostfile(void **state)
{
    (void)state;
    start_sshd();
    int rc = run("VKT_COMM_TIMEOUT_S=30 '%s' launch --hostfile %s/hostfile --ssh-port %d "
                 "--ssh-opts '%s' -- '%s'", vktrain, dir, ssh_port, ssh_opts, env_rank);
    if (rc != 0) fail_msg("launch exited %d\n%s\n%s", rc, out, err);
    for (int r = 0; r < 2; r++) {
        char want[128];
        snprintf(want, sizeof want, "[rank %d] env_rank source=torchrun rank=%d world=2 "
                 "local=%d/2 master=localhost:", r, r, r);
        if (!strstr(out, want)) fail_msg("missing '%s' in:\n%s\n%s", want, out, err);
    }
    assert_non_null(strstr(out, "sum=3"));
    /* --include picks a slot: one rank, told its device by the slot */
    rc = run("VKT_SSH_OPTS='%s' '%s' launch --hostfile %s/hostfile --ssh-port %d "
             "--include localhost:1 -- sh -c 'echo \"w=$WORLD_SIZE d=$VKT_DEVICE\"'",
             ssh_opts, vktrain, dir, ssh_port);
    if (rc != 0) fail_msg("launch --include exited %d\n%s\n%s", rc, out, err);
    assert_non_null(strstr(out, "[rank 0] w=1 d=1\n"));
    /* hostfile mistakes name the file and line */
    char bad[128];
    snprintf(bad, sizeof bad, "%s/bad_hosts", dir);
    FILE *f = fopen(bad, "w");
    fprintf(f, "localhost slots=2\nlocalhost slots=1\n");
    fclose(f);
    assert_int_equal(run("'%s' launch --hostfile %s -- true", vktrain, bad), 2);
    assert_non_null(strstr(err, "bad_hosts:2: host 'localhost' is already listed"));
    assert_int_equal(run("'%s' launch --hostfile %s/hostfile --include nohost -- true", vktrain,
                         dir), 2);
    assert_non_null(strstr(err, "host 'nohost' is not in the hostfile"));
    assert_int_equal(run("'%s' launch -n 2 --hostfile %s/hostfile -- true", vktrain, dir), 2);
}

/* Whether a process with token in its command line exists (procps pgrep).
 * "[v]kt..." matches the token but not this shell's own command line. */
static bool running(const char *token)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "pgrep -f '[%c]%s' >/dev/null", token[0], token + 1);
    int st = system(cmd);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void test_ssh_failing_rank(void **state)
{
    (void)state;
    start_sshd();
    char token[64];
    snprintf(token, sizeof token, "vkt-orphan-check-%d", (int)getpid());
    double t0 = now_s();
    /* rank 1 fails only once rank 0 is up, so the orphan check below
     * cannot pass because rank 0 never started */
    int rc = run("VKT_SSH_OPTS='%s' '%s' launch --hostfile %s/hostfile --ssh-port %d -- "
                 "sh -c 'if [ $RANK = 1 ]; then while [ ! -e %s/up0 ]; do sleep 0.1; done; "
                 "echo bye; exit 3; fi; touch %s/up0; sleep 60; : %s'",
                 ssh_opts, vktrain, dir, ssh_port, dir, dir, token);
    assert_int_equal(rc, 1);
    assert_true(now_s() - t0 < 30);
    assert_non_null(strstr(out, "[rank 1] bye"));
    if (!strstr(err, "rank 1 (on localhost, over ssh) exited with status 3"))
        fail_msg("launch did not name the failing rank:\n%s", err);
    /* rank 0's remote shell and its sleep are stopped by the watchdog */
    for (double t1 = now_s(); running(token); usleep(100 * 1000))
        if (now_s() - t1 > 10) fail_msg("rank 0 still runs on the remote side");
}

/* Ctrl-C: SIGINT to the launcher stops every ssh rank, remote side too. */
static void test_ssh_interrupt(void **state)
{
    (void)state;
    start_sshd();
    char token[64], log[128], hosts[128], port[16], prog[160];
    snprintf(token, sizeof token, "vkt-interrupt-check-%d", (int)getpid());
    snprintf(log, sizeof log, "%s/interrupt.log", dir);
    snprintf(hosts, sizeof hosts, "%s/hostfile", dir);
    snprintf(port, sizeof port, "%d", ssh_port);
    snprintf(prog, sizeof prog, "echo up; sleep 60; : %s", token);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "w", stdout) || dup2(1, 2) < 0) _exit(126);
        setenv("VKT_SSH_OPTS", ssh_opts, 1);
        execl(vktrain, vktrain, "launch", "--hostfile", hosts, "--ssh-port", port, "--", "sh",
              "-c", prog, (char *)NULL);
        _exit(127);
    }
    char text[4096] = "";
    for (double t0 = now_s(); !strstr(text, "[rank 0] up") || !strstr(text, "[rank 1] up");
         usleep(100 * 1000)) {
        if (now_s() - t0 > 30) fail_msg("the ranks did not start:\n%s", text);
        slurp(log, text, sizeof text);
    }
    double t1 = now_s();
    kill(pid, SIGINT);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    slurp(log, text, sizeof text);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 130 || !strstr(text, "interrupted; stopped all"))
        fail_msg("launch after SIGINT: status %d\n%s", st, text);
    assert_true(now_s() - t1 < 10);
    for (double t2 = now_s(); running(token); usleep(100 * 1000))
        if (now_s() - t2 > 10) fail_msg("a rank still runs on the remote side after Ctrl-C");
}

static int teardown(void **state)
{
    (void)state;
    if (sshd > 0) {
        kill(sshd, SIGTERM);
        waitpid(sshd, NULL, 0);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s PATH-TO-vktrain PATH-TO-env_rank\n", argv[0]);
        return 2;
    }
    vktrain = argv[1], env_rank = argv[2];
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    snprintf(dir, sizeof dir, "/tmp/vkt_launch_ssh_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torchrun_env),  cmocka_unit_test(test_slurm_env),
        cmocka_unit_test(test_ompi_env),      cmocka_unit_test(test_ssh_hostfile),
        cmocka_unit_test(test_ssh_failing_rank), cmocka_unit_test(test_ssh_interrupt),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
