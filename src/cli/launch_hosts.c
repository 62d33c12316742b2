/* vktrain launch across hosts: hostfiles, --include/--exclude, and the ssh
 * command line of a remote rank. See launch_hosts.h. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/launch_hosts.h"

static int fail(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

static int find_host(const launch_host *hosts, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(hosts[i].name) == len && memcmp(hosts[i].name, name, len) == 0) return i;
    return -1;
}

/* ------------------------------------------------------------ hostfiles -- */

/* One line without its comment: "HOST slots=N" or only white space. */
static int parse_line(const char *file, int ln, char *s, launch_host *hosts, int *n, int cap,
                      char *err, size_t errcap)
{
    char *hash = strchr(s, '#');
    if (hash) *hash = '\0';
    char *tok[2] = {NULL, NULL}, *extra = NULL;
    int nt = 0;
    for (char *save = NULL, *t = strtok_r(s, " \t\r", &save); t;
         t = strtok_r(NULL, " \t\r", &save)) {
        if (nt < 2) tok[nt] = t;
        /* Further KEY=VALUE words (Open MPI's max_slots=N) are ignored, as
         * DeepSpeed does; anything else is a mistake. */
        else if (!strchr(t, '=') && !extra) extra = t;
        nt++;
    }
    if (nt == 0) return 0;
    if (nt < 2 || strncmp(tok[1], "slots=", 6) != 0)
        return fail(err, errcap, "%s:%d: expected 'HOST slots=N', got '%s%s%s'", file, ln,
                    tok[0], nt > 1 ? " " : "", nt > 1 ? tok[1] : "");
    if (extra)
        return fail(err, errcap, "%s:%d: unexpected '%s' after 'HOST slots=N'", file, ln, extra);
    char *end;
    errno = 0;
    long slots = strtol(tok[1] + 6, &end, 10);
    if (!isdigit((unsigned char)tok[1][6]) || *end || errno || slots < 1 ||
        slots > LAUNCH_MAX_SLOTS)
        return fail(err, errcap, "%s:%d: '%s': slots must be a number in 1..%d", file, ln, tok[1],
                    LAUNCH_MAX_SLOTS);
    if (strlen(tok[0]) >= LAUNCH_HOST_MAX)
        return fail(err, errcap, "%s:%d: host name longer than %d bytes", file, ln,
                    LAUNCH_HOST_MAX - 1);
    if (find_host(hosts, *n, tok[0], strlen(tok[0])) >= 0)
        return fail(err, errcap, "%s:%d: host '%s' is already listed; give each host once with "
                    "all its slots", file, ln, tok[0]);
    if (*n == cap) return fail(err, errcap, "%s:%d: more than %d hosts", file, ln, cap);
    launch_host *h = &hosts[(*n)++];
    snprintf(h->name, sizeof h->name, "%s", tok[0]);
    h->slots = (int)slots;
    h->use = slots == 64 ? ~(uint64_t)0 : ((uint64_t)1 << slots) - 1;
    return 0;
}

int launch_hostfile_parse(const char *file, const char *text, launch_host *hosts, int cap,
                          char *err, size_t errcap)
{
    int n = 0, ln = 0;
    char line[1024];
    for (const char *s = text; *s;) {
        size_t len = strcspn(s, "\n");
        ln++;
        if (len >= sizeof line) return fail(err, errcap, "%s:%d: line too long", file, ln);
        memcpy(line, s, len);
        line[len] = '\0';
        if (parse_line(file, ln, line, hosts, &n, cap, err, errcap) != 0) return -1;
        s += len + (s[len] == '\n');
    }
    if (n == 0) return fail(err, errcap, "%s: no hosts (want lines 'HOST slots=N')", file);
    return n;
}

int launch_hostfile_read(const char *path, launch_host *hosts, int cap, char *err,
                         size_t errcap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, errcap, "%s: %s", path, strerror(errno));
    static char text[1 << 20];
    size_t got = fread(text, 1, sizeof text - 1, f);
    bool big = got == sizeof text - 1 && fgetc(f) != EOF;
    fclose(f);
    if (big) return fail(err, errcap, "%s: larger than %zu bytes", path, sizeof text - 1);
    text[got] = '\0';
    if (strlen(text) != got) return fail(err, errcap, "%s: not a text file (NUL byte)", path);
    return launch_hostfile_parse(path, text, hosts, cap, err, errcap);
}

/* --------------------------------------------------------------- filters -- */

/* Parse "host[:s,s,...]" of length len into the host index and its slot
 * mask (all slots when none are given). */
static int parse_term(const launch_host *hosts, int n, const char *opt, const char *t,
                      size_t len, int *host, uint64_t *mask, char *err, size_t errcap)
{
    const char *colon = memchr(t, ':', len);
    size_t hl = colon ? (size_t)(colon - t) : len;
    if (hl == 0) return fail(err, errcap, "%s: empty host name in '%.*s'", opt, (int)len, t);
    *host = find_host(hosts, n, t, hl);
    if (*host < 0)
        return fail(err, errcap, "%s: host '%.*s' is not in the hostfile", opt, (int)hl, t);
    const launch_host *h = &hosts[*host];
    if (!colon) {
        *mask = h->slots == 64 ? ~(uint64_t)0 : ((uint64_t)1 << h->slots) - 1;
        return 0;
    }
    *mask = 0;
    for (const char *s = colon + 1, *end = t + len; s <= end;) {
        char *e;
        long v = isdigit((unsigned char)*s) ? strtol(s, &e, 10) : -1;
        if (v < 0 || (e != end && *e != ',') || v >= h->slots)
            return fail(err, errcap, "%s: '%.*s': slots of %s are numbers 0..%d, separated by ','",
                        opt, (int)len, t, h->name, h->slots - 1);
        *mask |= (uint64_t)1 << v;
        s = e + 1;
    }
    return 0;
}

int launch_hosts_filter(launch_host *hosts, int n, const char *include, const char *exclude,
                        char *err, size_t errcap)
{
    if (include && exclude)
        return fail(err, errcap, "--include and --exclude cannot be used together");
    const char *spec = include ? include : exclude, *opt = include ? "--include" : "--exclude";
    if (spec) {
        if (!*spec) return fail(err, errcap, "%s: empty", opt);
        uint64_t named[LAUNCH_MAX_HOSTS] = {0};
        for (const char *t = spec;;) {
            size_t len = strcspn(t, "@");
            int h = 0;
            uint64_t mask = 0;
            if (parse_term(hosts, n, opt, t, len, &h, &mask, err, errcap) != 0) return -1;
            named[h] |= mask;
            if (!t[len]) break;
            t += len + 1;
        }
        for (int i = 0; i < n; i++) hosts[i].use = include ? named[i] : hosts[i].use & ~named[i];
    }
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (hosts[i].use) hosts[kept++] = hosts[i];
    if (kept == 0) return fail(err, errcap, "%s leaves no slots to run on", opt);
    return kept;
}

int launch_layout(const launch_host *hosts, int n, launch_rank *ranks, int cap)
{
    int world = 0;
    for (int h = 0; h < n; h++) {
        int local = 0, count = __builtin_popcountll(hosts[h].use);
        for (int s = 0; s < hosts[h].slots; s++) {
            if (!(hosts[h].use >> s & 1)) continue;
            if (world == cap) return -1;
            ranks[world++] = (launch_rank){h, local++, count, s};
        }
    }
    return world;
}

/* ------------------------------------------------------------------ ssh -- */

size_t launch_shell_quote(const char *str, char *out, size_t cap)
{
    size_t k = 0;
#define PUT(c)                        \
    do {                              \
        if (k + 1 < cap) out[k] = (c); \
        k++;                          \
    } while (0)
    PUT('\'');
    for (const char *s = str; *s; s++) {
        if (*s == '\'') {
            PUT('\'');
            PUT('\\');
            PUT('\'');
        }
        PUT(*s);
    }
    PUT('\'');
#undef PUT
    if (cap) out[k < cap ? k : cap - 1] = '\0';
    return k;
}

/* A growing string; on allocation failure it stays NULL. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...)
{
    for (int pass = 0; pass < 2 && b->s; pass++) {
        va_list ap;
        va_start(ap, fmt);
        int need = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (need >= 0 && b->len + (size_t)need < b->cap) {
            b->len += (size_t)need;
            return;
        }
        size_t cap = 2 * (b->cap + (size_t)need);
        char *s = realloc(b->s, cap);
        if (!s) free(b->s);
        b->s = s, b->cap = cap;
    }
}

static void put_quoted(sbuf *b, const char *str)
{
    size_t need = launch_shell_quote(str, NULL, 0);
    char *q = malloc(need + 1);
    if (!q) {
        free(b->s);
        b->s = NULL;
        return;
    }
    launch_shell_quote(str, q, need + 1);
    put(b, "%s", q);
    free(q);
}

/* The remote side of a rank, as one sh command line. Why the watchdog: a
 * process started by sshd without a tty gets no SIGHUP when the connection
 * ends, so killing the local ssh client alone would leave the rank running
 * until its next collective timed out. Instead the program runs in the
 * background with stdin from /dev/null, and a subshell reads the ssh stream
 * (fd 3) until it closes (the launcher stopped the client, exited or died,
 * or sshd saw the connection drop) and then sends the program SIGTERM. If
 * the network vanishes silently, sshd notices only through TCP keepalive,
 * and until then the rank's peers make it fail at its next collective.
 * setsid (util-linux, on every Linux) gives the program its own process
 * group, so the SIGTERM reaches the children it started as well. Started
 * as a background job of a shell without job control it is no group leader,
 * so setsid execs in place and $p is the program's pid and group; if the
 * stream closed before setsid ran, there is no group yet and the pid is
 * signalled instead. */
char *launch_remote_command(const launch_remote *r, char *const *argv)
{
    sbuf b = {malloc(512), 0, 512};
    put(&b, "cd ");
    put_quoted(&b, r->cwd);
    put(&b, " || exit 1; export RANK=%d LOCAL_RANK=%d WORLD_SIZE=%d LOCAL_WORLD_SIZE=%d "
            "MASTER_PORT=%d MASTER_ADDR=", r->rank, r->local_rank, r->world, r->local_world,
        r->master_port);
    put_quoted(&b, r->master_addr);
    if (r->device) {
        put(&b, " VKT_DEVICE=");
        put_quoted(&b, r->device);
    }
    for (char *const *f = r->forward; f && *f; f++) {
        size_t nl = strcspn(*f, "=");
        /* the name goes unquoted into the remote shell: letters, digits and
         * '_' only (anything else cannot be a shell variable anyway) */
        if (nl == 0 || strspn(*f, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789_") != nl)
            continue;
        put(&b, " %.*s=", (int)nl, *f);
        put_quoted(&b, (*f)[nl] ? *f + nl + 1 : "");
    }
    if (r->lp_threads) {
        put(&b, " LP_NUM_THREADS=");
        put_quoted(&b, r->lp_threads);
        put(&b, "; ");
    } else {
        put(&b, "; n=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1); n=$((n / %d)); "
                "[ \"$n\" -ge 1 ] || n=1; export LP_NUM_THREADS=$n; ", r->local_world);
    }
    /* The secret comes on stdin, never on a command line (ps shows those). */
    put(&b, "IFS= read -r VKT_JOB_SECRET || exit 1; export VKT_JOB_SECRET; "
            "exec 3<&0 </dev/null;");
    put(&b, " setsid");
    for (char *const *a = argv; *a; a++) {
        put(&b, " ");
        put_quoted(&b, *a);
    }
    put(&b, " 3<&- & p=$!; (while IFS= read -r _ <&3; do :; done; kill -TERM -- -$p || "
            "kill -TERM $p) 2>/dev/null & w=$!; exec 3<&-; wait $p; s=$?; kill $w 2>/dev/null; exit $s");
    return b.s;
}

char **launch_ssh_argv(const char *host, int port, const char *opts, const char *command)
{
    enum { MAX_ARGS = 64 };
    size_t olen = opts ? strlen(opts) + 1 : 1;
    char **v = malloc(MAX_ARGS * sizeof *v + olen + 16);
    if (!v) return NULL;
    char *copy = (char *)(v + MAX_ARGS), *portbuf = copy + olen;
    int k = 0;
    static const char *fixed[] = {"ssh", "-T", "-x", "-o", "BatchMode=yes", "-o",
                                  "LogLevel=ERROR"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) v[k++] = (char *)fixed[i];
    if (port > 0) {
        snprintf(portbuf, 16, "%d", port);
        v[k++] = "-p";
        v[k++] = portbuf;
    }
    snprintf(copy, olen, "%s", opts ? opts : "");
    for (char *save = NULL, *t = strtok_r(copy, " \t\n", &save); t;
         t = strtok_r(NULL, " \t\n", &save)) {
        if (k >= MAX_ARGS - 4) {
            free(v);
            return NULL;
        }
        v[k++] = t;
    }
    v[k++] = "--"; /* the host is never taken for an option */
    v[k++] = (char *)host;
    v[k++] = (char *)command;
    v[k] = NULL;
    return v;
}
