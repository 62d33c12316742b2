/* vktrain launch: run N local ranks of a program.
 *
 *   vktrain launch -n N [--devices 0,1,...] [--port P] [--] PROGRAM [ARGS...]
 *
 * Each rank gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
 * MASTER_ADDR=127.0.0.1, MASTER_PORT (a free port unless --port) and a
 * fresh job secret in VKT_JOB_SECRET (the environment, never a command
 * line); with --devices, VKT_DEVICE = the LOCAL_RANK-th entry. Ranks on a
 * CPU device share the cores, so unless LP_NUM_THREADS is set each rank
 * gets cores / N lavapipe threads. Every output line is prefixed with
 * "[rank R] ". If a rank fails, the others are stopped (SIGTERM, then
 * SIGKILL after 5 s) and launch exits 1 naming the rank; Ctrl-C stops all.
 * Remote ranks (--hostfile, ssh) are not implemented yet. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"

#define MAX_RANKS 64
#define LINE_MAX_BYTES 4096

typedef struct rank_proc {
    pid_t pid;
    int out; /* read end of the rank's stdout+stderr pipe, -1 when closed */
    char line[LINE_MAX_BYTES];
    size_t len;
    int status; /* wait status once exited */
    bool exited;
} rank_proc;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* A port the kernel considers free right now on 127.0.0.1. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool make_secret(char *out, size_t cap)
{
    unsigned char raw[24];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    bool ok = fd >= 0 && read(fd, raw, sizeof raw) == (ssize_t)sizeof raw;
    if (fd >= 0) close(fd);
    for (size_t i = 0; ok && i < sizeof raw && 2 * i + 2 < cap; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return ok;
}

/* The i-th comma-separated entry of list into out; false if missing. */
static bool list_entry(const char *list, int i, char *out, size_t cap)
{
    for (; i > 0 && list; i--) {
        list = strchr(list, ',');
        if (list) list++;
    }
    if (!list || !*list) return false;
    size_t n = strcspn(list, ",");
    if (n == 0 || n >= cap) return false;
    memcpy(out, list, n);
    out[n] = '\0';
    return true;
}

static void child(int rank, int n, int port, const char *secret, const char *devices,
                  int pipe_w, char **argv)
{
    char v[32];
    dup2(pipe_w, STDOUT_FILENO);
    dup2(pipe_w, STDERR_FILENO);
    close(pipe_w);
    snprintf(v, sizeof v, "%d", rank);
    setenv("RANK", v, 1);
    setenv("LOCAL_RANK", v, 1);
    snprintf(v, sizeof v, "%d", n);
    setenv("WORLD_SIZE", v, 1);
    setenv("LOCAL_WORLD_SIZE", v, 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    snprintf(v, sizeof v, "%d", port);
    setenv("MASTER_PORT", v, 1);
    setenv("VKT_JOB_SECRET", secret, 1);
    char dev[256];
    if (devices && list_entry(devices, rank, dev, sizeof dev)) setenv("VKT_DEVICE", dev, 1);
    if (!getenv("LP_NUM_THREADS")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        snprintf(v, sizeof v, "%ld", cores / n > 1 ? cores / n : 1);
        setenv("LP_NUM_THREADS", v, 1);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execvp(argv[0], argv);
    fprintf(stderr, "vktrain launch: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Print complete lines from rank r's pipe with its prefix; at EOF the rest. */
static void pump(rank_proc *p, int r)
{
    ssize_t got = read(p->out, p->line + p->len, sizeof p->line - 1 - p->len);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
    bool eof = got <= 0;
    if (!eof) p->len += (size_t)got;
    char *start = p->line, *nl;
    while ((nl = memchr(start, '\n', p->len - (size_t)(start - p->line)))) {
        printf("[rank %d] %.*s\n", r, (int)(nl - start), start);
        start = nl + 1;
    }
    p->len -= (size_t)(start - p->line);
    memmove(p->line, start, p->len);
    if (p->len == sizeof p->line - 1 || (eof && p->len)) { /* a very long line, or the tail */
        printf("[rank %d] %.*s\n", r, (int)p->len, p->line);
        p->len = 0;
    }
    fflush(stdout);
    if (eof) {
        close(p->out);
        p->out = -1;
    }
}

static void stop_all(rank_proc *ps, int n, int sig)
{
    for (int r = 0; r < n; r++)
        if (!ps[r].exited) kill(ps[r].pid, sig);
}

/* Reap exited ranks; the first failure is recorded in *failed. */
static void reap(rank_proc *ps, int n, int *failed)
{
    for (int r = 0; r < n; r++) {
        if (ps[r].exited || waitpid(ps[r].pid, &ps[r].status, WNOHANG) != ps[r].pid) continue;
        ps[r].exited = true;
        bool ok = WIFEXITED(ps[r].status) && WEXITSTATUS(ps[r].status) == 0;
        if (!ok && *failed < 0) *failed = r;
    }
}

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: vktrain launch -n N [--devices SEL,SEL,...] [--port P] [--] PROGRAM "
               "[ARGS...]\n\n"
               "Runs N local ranks of PROGRAM with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR,\n"
               "MASTER_PORT and a fresh VKT_JOB_SECRET set; --devices gives rank i the i-th\n"
               "device selector (VKT_DEVICE). Output lines are prefixed with the rank. When a\n"
               "rank fails the others are stopped and launch exits 1.\n");
    return code;
}

int cmd_launch(int argc, char **argv)
{
    int n = 0, port = 0;
    const char *devices = NULL;
    static const struct option opts[] = {{"ranks", required_argument, NULL, 'n'},
                                         {"devices", required_argument, NULL, 'd'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "+n:d:p:h", opts, NULL)) != -1;) {
        if (c == 'n') n = atoi(optarg);
        else if (c == 'd') devices = optarg;
        else if (c == 'p') port = atoi(optarg);
        else return usage(c == 'h' ? stdout : stderr, c == 'h' ? 0 : 2);
    }
    if (n < 1 || n > MAX_RANKS)
        return cli_usage_error("launch", "-n %d: give the number of ranks, 1..%d", n, MAX_RANKS);
    if (optind >= argc) return cli_usage_error("launch", "no program to run");
    if (port < 0 || port > 65535) return cli_usage_error("launch", "--port %d: not a port", port);
    if (!port && (port = free_port()) < 0)
        return cli_fail(VKT_ERR_SYSTEM, "launch: cannot find a free port on 127.0.0.1");
    char secret[64];
    if (!make_secret(secret, sizeof secret))
        return cli_fail(VKT_ERR_SYSTEM, "launch: cannot read /dev/urandom for a job secret");
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    static rank_proc ps[MAX_RANKS];
    fflush(stdout);
    for (int r = 0; r < n; r++) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0) {
            stop_all(ps, r, SIGKILL);
            return cli_fail(VKT_ERR_SYSTEM, "launch: pipe");
        }
        ps[r] = (rank_proc){.out = fds[0]};
        ps[r].pid = fork();
        if (ps[r].pid == 0) {
            int w = dup(fds[1]); /* without O_CLOEXEC: survives exec as stdout/stderr */
            child(r, n, port, secret, devices, w, argv + optind);
        }
        close(fds[1]);
        if (ps[r].pid < 0) {
            stop_all(ps, r, SIGKILL);
            return cli_fail(VKT_ERR_SYSTEM, "launch: fork");
        }
    }
    int failed = -1, open_pipes;
    double stop_at = 0;
    for (;;) {
        struct pollfd pf[MAX_RANKS];
        for (int r = 0; r < n; r++) pf[r] = (struct pollfd){.fd = ps[r].out, .events = POLLIN};
        if (poll(pf, (nfds_t)n, 100) > 0)
            for (int r = 0; r < n; r++)
                if (ps[r].out >= 0 && (pf[r].revents & (POLLIN | POLLHUP))) pump(&ps[r], r);
        open_pipes = 0;
        for (int r = 0; r < n; r++) open_pipes += ps[r].out >= 0;
        reap(ps, n, &failed);
        bool all_done = true;
        for (int r = 0; r < n; r++) all_done = all_done && ps[r].exited;
        if (all_done && open_pipes == 0) break;
        if ((failed >= 0 || interrupted) && !stop_at) {
            stop_all(ps, n, SIGTERM);
            stop_at = cli_now_s() + 5;
        }
        if (stop_at && cli_now_s() > stop_at) {
            stop_all(ps, n, SIGKILL);
            stop_at = cli_now_s() + 1e9; /* once */
        }
        if (all_done && stop_at) break;
    }
    for (int r = 0; r < n; r++) {
        if (!ps[r].exited) waitpid(ps[r].pid, &ps[r].status, 0);
        if (ps[r].out >= 0) close(ps[r].out);
    }
    if (failed >= 0) {
        int s = ps[failed].status;
        if (WIFEXITED(s))
            fprintf(stderr, "vktrain launch: rank %d exited with status %d; stopped the other "
                            "ranks (its output is above, prefixed [rank %d])\n",
                    failed, WEXITSTATUS(s), failed);
        else
            fprintf(stderr, "vktrain launch: rank %d was killed by signal %d (%s); stopped the "
                            "other ranks\n", failed, WTERMSIG(s), strsignal(WTERMSIG(s)));
        return 1;
    }
    if (interrupted) {
        fprintf(stderr, "vktrain launch: interrupted; stopped all ranks\n");
        return 130;
    }
    return 0;
}
