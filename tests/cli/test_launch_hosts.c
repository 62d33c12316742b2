/* Unit tests of the launcher's host handling (src/cli/launch_hosts.c):
 * DeepSpeed hostfiles, --include/--exclude, the rank layout, shell quoting,
 * and the remote command line run by a real /bin/sh: the variables it
 * exports, arguments that need quoting, the secret read from stdin, and
 * the watchdog that stops the program when stdin closes. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/launch_hosts.h"

static launch_host hosts[LAUNCH_MAX_HOSTS];
static char err[512];

static int parse(const char *text)
{
    err[0] = '\0';
    return launch_hostfile_parse("hf", text, hosts, LAUNCH_MAX_HOSTS, err, sizeof err);
}

static void parse_fails(const char *text, const char *want)
{
    assert_int_equal(parse(text), -1);
    if (!strstr(err, want)) fail_msg("error '%s' lacks '%s'", err, want);
}

static void test_hostfile(void **state)
{
    (void)state;
    assert_int_equal(parse("# cluster\nworker-1 slots=4\n\n  worker-2\tslots=2  # two\n"
                           "w3 slots=1"),
                     3);
    assert_string_equal(hosts[0].name, "worker-1");
    assert_int_equal(hosts[0].slots, 4);
    assert_int_equal(hosts[0].use, 0xf);
    assert_string_equal(hosts[1].name, "worker-2");
    assert_int_equal(hosts[1].slots, 2);
    assert_string_equal(hosts[2].name, "w3");
    assert_int_equal(parse("h slots=64\n"), 1);
    assert_int_equal(hosts[0].use, ~(uint64_t)0);
    parse_fails("a slots=1\nb\n", "hf:2: expected 'HOST slots=N', got 'b'");
    parse_fails("a slots=1\n\nb slots=x\n", "hf:3: 'slots=x'");
    parse_fails("a slots=0\n", "hf:1: 'slots=0'");
    parse_fails("a slots=65\n", "hf:1:");
    parse_fails("a slots=2 extra\n", "hf:1: unexpected 'extra'");
    assert_int_equal(parse("a slots=2 max_slots=4\n"), 1); /* Open MPI's extra keys */
    assert_int_equal(hosts[0].slots, 2);
    parse_fails("a gpus=2\n", "hf:1: expected 'HOST slots=N', got 'a gpus=2'");
    parse_fails("a slots=1\na slots=2\n", "hf:2: host 'a' is already listed");
    parse_fails("# only a comment\n\n", "hf: no hosts");
    assert_int_equal(launch_hostfile_read("/nonexistent/hostfile", hosts, 4, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/hostfile: No such file"));
}

static int filter(const char *text, const char *inc, const char *exc)
{
    int n = parse(text);
    assert_true(n > 0);
    return launch_hosts_filter(hosts, n, inc, exc, err, sizeof err);
}

static void test_filters(void **state)
{
    (void)state;
    const char *hf = "h1 slots=4\nh2 slots=2\nh3 slots=3\n";
    assert_int_equal(filter(hf, NULL, NULL), 3);
    /* include: hosts and slots, kept in hostfile order */
    assert_int_equal(filter(hf, "h3@h1:0,2", NULL), 2);
    assert_string_equal(hosts[0].name, "h1");
    assert_int_equal(hosts[0].use, 0x5);
    assert_string_equal(hosts[1].name, "h3");
    assert_int_equal(hosts[1].use, 0x7);
    assert_int_equal(filter(hf, "h2:1@h2:0", NULL), 1);
    assert_int_equal(hosts[0].use, 0x3);
    /* exclude: a whole host, or some slots */
    assert_int_equal(filter(hf, NULL, "h2@h1:0,3"), 2);
    assert_string_equal(hosts[0].name, "h1");
    assert_int_equal(hosts[0].use, 0x6);
    assert_string_equal(hosts[1].name, "h3");
    assert_int_equal(filter(hf, NULL, "h2:0,1"), 2); /* no slots left: host gone */
    assert_string_equal(hosts[1].name, "h3");
    /* errors */
    assert_int_equal(filter(hf, "h1", "h2"), -1);
    assert_non_null(strstr(err, "cannot be used together"));
    assert_int_equal(filter(hf, "h9", NULL), -1);
    assert_non_null(strstr(err, "--include: host 'h9' is not in the hostfile"));
    assert_int_equal(filter(hf, NULL, "h2:2"), -1);
    assert_non_null(strstr(err, "--exclude: 'h2:2': slots of h2 are numbers 0..1"));
    assert_int_equal(filter(hf, "h1:", NULL), -1);
    assert_int_equal(filter(hf, "h1:0,,1", NULL), -1);
    assert_int_equal(filter(hf, "h1:x", NULL), -1);
    assert_int_equal(filter(hf, "@h1", NULL), -1);
    assert_int_equal(filter(hf, "", NULL), -1);
    assert_int_equal(filter(hf, NULL, "h1@h2@h3"), -1);
    assert_non_null(strstr(err, "leaves no slots"));
}

static void test_layout(void **state)
{
    (void)state;
    assert_int_equal(filter("a slots=3\nb slots=2\n", NULL, "a:1"), 2);
    launch_rank r[8];
    assert_int_equal(launch_layout(hosts, 2, r, 8), 4);
    const launch_rank want[] = {{0, 0, 2, 0}, {0, 1, 2, 2}, {1, 0, 2, 0}, {1, 1, 2, 1}};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r[i].host, want[i].host);
        assert_int_equal(r[i].local_rank, want[i].local_rank);
        assert_int_equal(r[i].local_world, want[i].local_world);
        assert_int_equal(r[i].slot, want[i].slot);
    }
    assert_int_equal(launch_layout(hosts, 2, r, 3), -1);
}

static void test_quote(void **state)
{
    (void)state;
    char q[64];
    assert_int_equal(launch_shell_quote("a b", q, sizeof q), 5);
    assert_string_equal(q, "'a b'");
    launch_shell_quote("it's", q, sizeof q);
    assert_string_equal(q, "'it'\\''s'");
    launch_shell_quote("", q, sizeof q);
    assert_string_equal(q, "''");
    assert_int_equal(launch_shell_quote("abcdef", q, 4), 8); /* truncated, length told */
    assert_string_equal(q, "'ab");
    char **v = launch_ssh_argv("h1", 2222, " -i k  -o X=y ", "CMD");
    const char *want[] = {"ssh", "-T", "-x", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                          "-p", "2222", "-i", "k", "-o", "X=y", "--", "h1", "CMD", NULL};
    for (int i = 0; want[i]; i++) assert_string_equal(v[i], want[i]);
    assert_null(v[16]);
    free(v);
}

/* Run cmd with sh; stdin gets `input` and stays open unless close_in. The
 * output goes to out. Returns the pid; *in_w is the stdin pipe (or -1). */
static pid_t run_sh(const char *cmd, const char *input, int *in_w, const char *out)
{
    int in[2];
    assert_int_equal(pipe(in), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        close(in[0]);
        close(in[1]);
        FILE *f = freopen(out, "w", stdout);
        if (!f) _exit(99);
        dup2(1, 2);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(98);
    }
    close(in[0]);
    assert_int_equal(write(in[1], input, strlen(input)), (ssize_t)strlen(input));
    *in_w = in[1];
    return pid;
}

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

static void test_remote_command(void **state)
{
    (void)state;
    char dir[] = "/tmp/vkt_remote_XXXXXX", out[64], buf[4096];
    assert_non_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/out", dir);
    char *fwd[] = {"VKT_COMM_TIMEOUT_S=7", "VKT_X=a'b c", NULL};
    launch_remote r = {.rank = 3, .world = 4, .local_rank = 1, .local_world = 2,
                       .master_port = 1234, .master_addr = "head node", .device = "1",
                       .lp_threads = NULL, .cwd = dir, .forward = fwd};
    char *argv[] = {"sh", "-c",
                    "echo \"r=$RANK l=$LOCAL_RANK w=$WORLD_SIZE lw=$LOCAL_WORLD_SIZE "
                    "m=$MASTER_ADDR:$MASTER_PORT d=$VKT_DEVICE t=$VKT_COMM_TIMEOUT_S "
                    "x=$VKT_X s=$VKT_JOB_SECRET lp=$LP_NUM_THREADS pwd=$(pwd)\"; echo \"$0|$1\"; "
                    "exit 5",
                    "it's", "$HOME", NULL};
    char *cmd = launch_remote_command(&r, argv);
    assert_non_null(cmd);
    assert_null(strstr(cmd, "s3cr3t")); /* the secret is never on the command line */
    int in_w;
    pid_t pid = run_sh(cmd, "s3cr3t\n", &in_w, out);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    close(in_w);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 5); /* the program's status comes back */
    slurp(out, buf, sizeof buf);
    char want[512];
    snprintf(want, sizeof want, "r=3 l=1 w=4 lw=2 m=head node:1234 d=1 t=7 x=a'b c s=s3cr3t lp=");
    if (!strstr(buf, want)) fail_msg("missing '%s' in:\n%s", want, buf);
    snprintf(want, sizeof want, "pwd=%s\nit's|$HOME\n", dir);
    if (!strstr(buf, want)) fail_msg("missing '%s' in:\n%s", want, buf);
    free(cmd);

    /* The watchdog: the program and what it started end when stdin closes. */
    r.lp_threads = "3";
    char *sleeper[] = {"sh", "-c", "echo lp=$LP_NUM_THREADS; sleep 30 & wait", NULL};
    cmd = launch_remote_command(&r, sleeper);
    pid = run_sh(cmd, "s\n", &in_w, out);
    usleep(300 * 1000);
    assert_int_equal(waitpid(pid, &st, WNOHANG), 0); /* still running while stdin is open */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    close(in_w);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 5);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM);
    slurp(out, buf, sizeof buf);
    assert_non_null(strstr(buf, "lp=3"));
    free(cmd);
    remove(out);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostfile), cmocka_unit_test(test_filters),
        cmocka_unit_test(test_layout),   cmocka_unit_test(test_quote),
        cmocka_unit_test(test_remote_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
