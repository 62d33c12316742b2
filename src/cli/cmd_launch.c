/* vktrain launch: run the ranks of a program, here or over ssh.
 *
 *   vktrain launch -n N [--devices 0,1,...] [--port P] [--] PROGRAM [ARGS...]
 *   vktrain launch --hostfile FILE [--include/--exclude SPEC] ... PROGRAM ...
 *
 * Each rank gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
 * MASTER_ADDR (127.0.0.1, or the first host of the hostfile), MASTER_PORT
 * (a free port unless --port) and a fresh job secret in VKT_JOB_SECRET
 * (the environment or ssh's stdin, never a command line); with --devices,
 * VKT_DEVICE = the LOCAL_RANK-th entry. Ranks on a CPU device share the
 * cores, so unless LP_NUM_THREADS is set each rank gets cores / ranks-on-
 * the-host lavapipe threads. Every output line is prefixed with "[rank R] ".
 * If a rank fails, the others are stopped (SIGTERM, then SIGKILL after 5 s)
 * and launch exits 1 naming the rank; Ctrl-C stops all. Hostfiles, filters
 * and the remote command line live in launch_hosts.c. */
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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/launch_hosts.h"

#define MAX_RANKS 64
#define LINE_MAX_BYTES 4096

typedef struct rank_proc {
    pid_t pid;
    int out; /* read end of the rank's stdout+stderr pipe, -1 when closed */
    int in;  /* ssh ranks: write end of ssh's stdin (secret, then held open); else -1 */
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

/* How the ranks are placed and what they all share. */
typedef struct job {
    int world, port, ssh_port;
    const char *master, *devices, *ssh_opts;
    char secret[64];
    char **argv;
    /* --hostfile: every rank starts over ssh on its host */
    launch_host *hosts;
    launch_rank *ranks; /* NULL: local ranks, rank r has local rank r */
} job;

static void child(const job *j, int rank, int pipe_w)
{
    char v[32];
    dup2(pipe_w, STDOUT_FILENO);
    dup2(pipe_w, STDERR_FILENO);
    close(pipe_w);
    snprintf(v, sizeof v, "%d", rank);
    setenv("RANK", v, 1);
    setenv("LOCAL_RANK", v, 1);
    snprintf(v, sizeof v, "%d", j->world);
    setenv("WORLD_SIZE", v, 1);
    setenv("LOCAL_WORLD_SIZE", v, 1);
    setenv("MASTER_ADDR", j->master, 1);
    snprintf(v, sizeof v, "%d", j->port);
    setenv("MASTER_PORT", v, 1);
    setenv("VKT_JOB_SECRET", j->secret, 1);
    char dev[256];
    if (j->devices && list_entry(j->devices, rank, dev, sizeof dev)) setenv("VKT_DEVICE", dev, 1);
    if (!getenv("LP_NUM_THREADS")) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        snprintf(v, sizeof v, "%ld", cores / j->world > 1 ? cores / j->world : 1);
        setenv("LP_NUM_THREADS", v, 1);
    }
    execvp(j->argv[0], j->argv);
    fprintf(stderr, "vktrain launch: cannot run %s: %s\n", j->argv[0], strerror(errno));
    _exit(127);
}

/* The VKT_* settings of this environment that remote ranks get too (the
 * secret goes separately, the ssh options are the launcher's, and a device
 * picked for the rank replaces VKT_DEVICE). */
static char **forwarded(bool own_device)
{
    extern char **environ;
    static char *keep[64];
    int k = 0;
    static const char *skip[] = {"VKT_JOB_SECRET=", "VKT_JOB_SECRET_FILE=", "VKT_SSH_OPTS=",
                                 "VKT_DEVICE="};
    for (char **e = environ; *e && k < 63; e++) {
        bool take = strncmp(*e, "VKT_", 4) == 0;
        for (int i = 0; i < 3 + own_device && take; i++)
            take = strncmp(*e, skip[i], strlen(skip[i])) != 0;
        if (take) keep[k++] = *e;
    }
    keep[k] = NULL;
    return keep;
}

/* Rank r over ssh on its host (in the forked child; stdin is the pipe the
 * launcher writes the secret into). */
static void ssh_child(const job *j, int r, int pipe_w, int in_r)
{
    dup2(in_r, STDIN_FILENO);
    dup2(pipe_w, STDOUT_FILENO);
    dup2(pipe_w, STDERR_FILENO);
    close(in_r);
    close(pipe_w);
    const launch_rank *lr = &j->ranks[r];
    char cwd[4096], dev[256], slot[16];
    const char *device = NULL;
    if (j->devices && list_entry(j->devices, lr->local_rank, dev, sizeof dev)) device = dev;
    const launch_host *h = &j->hosts[lr->host];
    /* Slots picked by --include/--exclude name the devices to use. */
    if (!device && lr->local_world < 64 && h->use != (((uint64_t)1 << lr->local_world) - 1)) {
        snprintf(slot, sizeof slot, "%d", lr->slot);
        device = slot;
    }
    launch_remote rr = {.rank = r, .world = j->world, .local_rank = lr->local_rank,
                        .local_world = lr->local_world, .master_port = j->port,
                        .master_addr = j->master, .device = device,
                        .lp_threads = getenv("LP_NUM_THREADS"),
                        .cwd = getcwd(cwd, sizeof cwd) ? cwd : ".",
                        .forward = forwarded(device != NULL)};
    char *cmd = launch_remote_command(&rr, j->argv);
    char **argv = cmd ? launch_ssh_argv(h->name, j->ssh_port, j->ssh_opts, cmd) : NULL;
    if (!argv) {
        fprintf(stderr, "vktrain launch: rank %d: out of memory or too many ssh options\n", r);
        _exit(127);
    }
    execvp(argv[0], argv);
    fprintf(stderr, "vktrain launch: cannot run ssh: %s (install openssh-client)\n",
            strerror(errno));
    _exit(127);
}

/* Fork rank r: a local process, or ssh to its host. */
static bool spawn(const job *j, int r, rank_proc *p)
{
    int fds[2], in[2] = {-1, -1};
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
    if (j->ranks && pipe2(in, O_CLOEXEC) != 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    *p = (rank_proc){.out = fds[0], .in = in[1]};
    pid_t launcher = getpid();
    p->pid = fork();
    if (p->pid == 0) {
        /* A process group per rank, so stopping it stops the processes it
         * started too; Ctrl-C reaches the launcher, which stops them all.
         * If the launcher itself is killed, the rank (or its ssh client,
         * whose end makes the remote side stop) gets SIGTERM. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != launcher) _exit(1); /* it died before prctl */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        int w = dup(fds[1]); /* without O_CLOEXEC: survives exec as stdout/stderr */
        if (j->ranks) ssh_child(j, r, w, dup(in[0]));
        child(j, r, w);
    }
    close(fds[1]);
    if (in[0] >= 0) close(in[0]);
    if (p->pid < 0) return false;
    setpgid(p->pid, p->pid); /* also here: no race with an early stop_all */
    if (p->in >= 0) { /* the remote command reads it first; a dead ssh shows in its status */
        char line[80];
        int len = snprintf(line, sizeof line, "%s\n", j->secret);
        if (write(p->in, line, (size_t)len) != len) {
            /* ssh is gone already; its exit status reports why */
        }
    }
    return true;
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
        if (!ps[r].exited && kill(-ps[r].pid, sig) != 0) /* its group: what it started too */
            kill(ps[r].pid, sig);
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
    fprintf(f,
"usage: vktrain launch -n N [--devices SEL,...] [--port P] [--] PROGRAM [ARGS...]\n"
"       vktrain launch --hostfile FILE [--include SPEC | --exclude SPEC] [--ssh-port P]\n"
"                      [--ssh-opts 'OPTS'] [--master-addr HOST] [--port P] [--] PROGRAM ...\n"
"\n"
"Runs the ranks of PROGRAM with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,\n"
"MASTER_ADDR, MASTER_PORT, a fresh VKT_JOB_SECRET and (unless set) LP_NUM_THREADS =\n"
"cores / ranks on the host. Output lines are prefixed with the rank. When a rank\n"
"fails the others are stopped and launch exits 1 naming it; Ctrl-C stops all.\n"
"\n"
"  -n N              N ranks on this host (MASTER_ADDR 127.0.0.1)\n"
"  --devices A,B     rank with local rank i gets VKT_DEVICE = the i-th entry\n"
"  --port P          MASTER_PORT (default: a port free on this host now; 29500\n"
"                    when the master is another host)\n"
"  --hostfile FILE   DeepSpeed's format: lines 'HOST slots=N', '#' comments; one\n"
"                    rank per slot, host by host, every one started over ssh\n"
"                    (BatchMode, no tty) in this directory, with VKT_* settings\n"
"                    exported and the secret passed on ssh's stdin\n"
"  --include SPEC    only these hosts/slots: 'host1:0,1@host2' (all of host2)\n"
"  --exclude SPEC    all but these; with slot lists, VKT_DEVICE = the slot\n"
"  --master-addr H   address ranks meet at (default: the first host used)\n"
"  --ssh-port P      ssh's port on every host\n"
"  --ssh-opts 'OPTS' more ssh options, split at spaces (also $VKT_SSH_OPTS),\n"
"                    e.g. '-i KEY -o StrictHostKeyChecking=no'\n"
"\n"
"Under srun, mpirun or torchrun-style variables no launcher is needed: the\n"
"library reads SLURM_PROCID/SLURM_NTASKS/SLURM_NODELIST, OMPI_COMM_WORLD_* or\n"
"RANK/WORLD_SIZE itself (export VKT_JOB_SECRET first; mpirun -x passes it).\n"
"If the launcher loses a host's network, that host's ranks may live on until\n"
"sshd notices or their next collective times out.\n");
    return code;
}

typedef struct launch_args {
    int n, port, ssh_port;
    const char *devices, *hostfile, *include, *exclude, *master, *ssh_opts;
} launch_args;

/* Options into *a; returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, launch_args *a)
{
    static const struct option opts[] = {
        {"ranks", required_argument, NULL, 'n'},    {"devices", required_argument, NULL, 'd'},
        {"port", required_argument, NULL, 'p'},     {"hostfile", required_argument, NULL, 'H'},
        {"include", required_argument, NULL, 'I'},  {"exclude", required_argument, NULL, 'E'},
        {"master-addr", required_argument, NULL, 'M'},
        {"ssh-port", required_argument, NULL, 'P'}, {"ssh-opts", required_argument, NULL, 'O'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    for (int c; (c = getopt_long(argc, argv, "+n:d:p:h", opts, NULL)) != -1;) {
        if (c == 'n') a->n = atoi(optarg);
        else if (c == 'd') a->devices = optarg;
        else if (c == 'p') a->port = atoi(optarg);
        else if (c == 'H') a->hostfile = optarg;
        else if (c == 'I') a->include = optarg;
        else if (c == 'E') a->exclude = optarg;
        else if (c == 'M') a->master = optarg;
        else if (c == 'P') a->ssh_port = atoi(optarg);
        else if (c == 'O') a->ssh_opts = optarg;
        else return usage(c == 'h' ? stdout : stderr, c == 'h' ? 0 : 2);
    }
    if (a->hostfile && a->n)
        return cli_usage_error("launch", "give either -n (local ranks) or --hostfile, not both");
    if (!a->hostfile && (a->include || a->exclude || a->ssh_port || a->ssh_opts))
        return cli_usage_error("launch", "--include, --exclude, --ssh-port and --ssh-opts need "
                               "--hostfile");
    if (!a->hostfile && (a->n < 1 || a->n > MAX_RANKS))
        return cli_usage_error("launch", "-n %d: give the number of ranks, 1..%d", a->n,
                               MAX_RANKS);
    if (optind >= argc) return cli_usage_error("launch", "no program to run");
    if (a->port < 0 || a->port > 65535)
        return cli_usage_error("launch", "--port %d: not a port", a->port);
    if (a->ssh_port < 0 || a->ssh_port > 65535)
        return cli_usage_error("launch", "--ssh-port %d: not a port", a->ssh_port);
    return -1;
}

/* --hostfile: the hosts, filtered, and one rank per slot. */
static int plan_hosts(const launch_args *a, job *j)
{
    static launch_host hosts[LAUNCH_MAX_HOSTS];
    static launch_rank ranks[MAX_RANKS];
    char err[512];
    int n = launch_hostfile_read(a->hostfile, hosts, LAUNCH_MAX_HOSTS, err, sizeof err);
    if (n > 0) n = launch_hosts_filter(hosts, n, a->include, a->exclude, err, sizeof err);
    if (n < 0) return cli_usage_error("launch", "%s", err);
    j->world = launch_layout(hosts, n, ranks, MAX_RANKS);
    if (j->world < 0)
        return cli_usage_error("launch", "%s: more than %d ranks", a->hostfile, MAX_RANKS);
    j->hosts = hosts, j->ranks = ranks;
    j->master = a->master ? a->master : hosts[0].name;
    if (!a->master && n > 1 &&
        (strcmp(hosts[0].name, "localhost") == 0 || strncmp(hosts[0].name, "127.", 4) == 0))
        fprintf(stderr, "vktrain launch: warning: the first host is %s, which the other hosts "
                        "cannot reach; give --master-addr\n", hosts[0].name);
    return -1;
}

/* Watch the ranks until all have ended, or one failed / Ctrl-C and the
 * rest were stopped. Returns the first failed rank, or -1. */
static int supervise(rank_proc *ps, int n)
{
    int failed = -1;
    double stop_at = 0;
    for (;;) {
        struct pollfd pf[MAX_RANKS];
        for (int r = 0; r < n; r++) pf[r] = (struct pollfd){.fd = ps[r].out, .events = POLLIN};
        if (poll(pf, (nfds_t)n, 100) > 0)
            for (int r = 0; r < n; r++)
                if (ps[r].out >= 0 && (pf[r].revents & (POLLIN | POLLHUP))) pump(&ps[r], r);
        int open_pipes = 0;
        for (int r = 0; r < n; r++) open_pipes += ps[r].out >= 0;
        int after_stop = -1; /* ranks that die once we stop them are not the cause */
        reap(ps, n, stop_at ? &after_stop : &failed);
        bool all_done = true;
        for (int r = 0; r < n; r++) all_done = all_done && ps[r].exited;
        if (all_done && open_pipes == 0) break;
        if ((failed >= 0 || interrupted) && !stop_at) {
            /* For ssh ranks this ends the client; the remote watchdog then
             * sees its stdin close and stops the program. */
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
        if (ps[r].in >= 0) close(ps[r].in);
    }
    return failed;
}

static int report_failure(const job *j, const rank_proc *p, int r)
{
    char where[LAUNCH_HOST_MAX + 32] = "";
    if (j->ranks) snprintf(where, sizeof where, " (on %s, over ssh)", j->hosts[j->ranks[r].host].name);
    int s = p->status;
    if (WIFEXITED(s))
        fprintf(stderr, "vktrain launch: rank %d%s exited with status %d; stopped the other "
                        "ranks (its output is above, prefixed [rank %d])\n",
                r, where, WEXITSTATUS(s), r);
    else
        fprintf(stderr, "vktrain launch: rank %d%s was killed by signal %d (%s); stopped the "
                        "other ranks\n", r, where, WTERMSIG(s), strsignal(WTERMSIG(s)));
    if (j->ranks && WIFEXITED(s) && WEXITSTATUS(s) == 255) {
        char port[24] = "";
        if (j->ssh_port) snprintf(port, sizeof port, " -p %d", j->ssh_port);
        fprintf(stderr, "vktrain launch: status 255 is ssh's own failure: check that 'ssh%s "
                        "-o BatchMode=yes %s true' works (keys, known hosts; --ssh-opts adds "
                        "options)\n", port, j->hosts[j->ranks[r].host].name);
    }
    return 1;
}

int cmd_launch(int argc, char **argv)
{
    launch_args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    job j = {.world = a.n, .port = a.port, .ssh_port = a.ssh_port, .devices = a.devices,
             .master = a.master ? a.master : "127.0.0.1", .argv = argv + optind};
    if (a.hostfile && (rc = plan_hosts(&a, &j)) >= 0) return rc;
    j.ssh_opts = a.ssh_opts ? a.ssh_opts : getenv("VKT_SSH_OPTS");
    /* With several hosts a port free here says nothing about the master
     * host: use the conventional 29500 there (--port to change it). */
    if (!j.port && a.hostfile && strcmp(j.master, "127.0.0.1") && strcmp(j.master, "localhost"))
        j.port = 29500;
    if (!j.port && (j.port = free_port()) < 0)
        return cli_fail(VKT_ERR_SYSTEM, "launch: cannot find a free port on 127.0.0.1");
    if (!make_secret(j.secret, sizeof j.secret))
        return cli_fail(VKT_ERR_SYSTEM, "launch: cannot read /dev/urandom for a job secret");
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a dead ssh must not kill the launcher */
    static rank_proc ps[MAX_RANKS];
    fflush(stdout);
    for (int r = 0; r < j.world; r++) {
        if (!spawn(&j, r, &ps[r])) {
            stop_all(ps, r, SIGKILL);
            return cli_fail(VKT_ERR_SYSTEM, "launch: cannot start a rank (pipe/fork)");
        }
    }
    int failed = supervise(ps, j.world);
    if (failed >= 0) return report_failure(&j, &ps[failed], failed);
    if (interrupted) {
        fprintf(stderr, "vktrain launch: interrupted; stopped all ranks\n");
        return 130;
    }
    return 0;
}
