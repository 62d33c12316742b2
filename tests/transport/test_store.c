/* Unit tests of the rendezvous stores and job-secret handling: TCP and file
 * stores, wrong secrets refused, other programs and protocols told apart,
 * connections reaped and a server out of descriptors, a timed-out request
 * losing its connection, secret-file permissions, and the option checks of
 * vkt_comm_create. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gloo_backend.h"
#include "harness.h"
#include "transport_int.h"

static vkt__store *connect_store(const char *addr, const char *secret, int allow,
                                 vkt_status *st_out)
{
    vkt__auth auth;
    vkt__store_server *srv = NULL;
    vkt__store *s = NULL;
    vkt_status st = vkt__auth_init(&auth, secret, allow);
    if (st == VKT_OK) st = vkt__store_open(addr, 0, &auth, 2.0, &srv, &s);
    if (st_out) *st_out = st;
    return s;
}

static void exercise(vkt__store *s)
{
    char buf[64];
    size_t len = 0;
    int64_t v = 0;
    assert_int_equal(vkt__store_set(s, "a/key", "hello", 5), VKT_OK);
    assert_int_equal(vkt__store_get(s, "a/key", buf, sizeof buf, &len), VKT_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(vkt__store_set(s, "a/key", "", 0), VKT_OK); /* overwrite, empty */
    assert_int_equal(vkt__store_get(s, "a/key", buf, sizeof buf, &len), VKT_OK);
    assert_int_equal(len, 0);
    assert_int_equal(vkt__store_add(s, "ctr", 5, &v), VKT_OK);
    assert_int_equal(v, 5);
    assert_int_equal(vkt__store_add(s, "ctr", -2, &v), VKT_OK);
    assert_int_equal(v, 3);
    assert_int_equal(vkt__store_set(s, "big", "0123456789", 10), VKT_OK);
    assert_int_equal(vkt__store_get(s, "big", buf, 4, &len), VKT_ERR_CORRUPT);
    s->timeout_s = 0.2; /* a missing key times out, naming it */
    double t0 = vkt__now();
    assert_int_equal(vkt__store_get(s, "missing", buf, sizeof buf, &len), VKT_ERR_TIMEOUT);
    assert_true(vkt__now() - t0 < 2.0);
    assert_non_null(strstr(vkt_last_error(), "missing"));
}

static void test_tcp_store(void **state)
{
    (void)state;
    char addr[64];
    void *srv = start_store(TEST_SECRET, addr, sizeof addr);
    assert_non_null(srv);
    vkt__store *s = connect_store(addr, TEST_SECRET, 0, NULL);
    assert_non_null(s);
    exercise(s);
    vkt__store_close(s);
    stop_store(srv);
}

/* The server's request decoder (what tests/fuzz/fuzz_store.c fuzzes). */
static size_t put_req(unsigned char *b, uint32_t op, const char *key, size_t keylen,
                      uint64_t arg, const char *val)
{
    uint32_t kl = (uint32_t)keylen;
    memcpy(b, &op, 4);
    memcpy(b + 4, &kl, 4);
    memcpy(b + 8, &arg, 8);
    memcpy(b + 16, key, keylen);
    if (op == VKT_STORE_OP_SET) memcpy(b + 16 + keylen, val, arg);
    return 16 + keylen + (op == VKT_STORE_OP_SET ? arg : 0);
}

static void test_store_request_decode(void **state)
{
    (void)state;
    unsigned char b[64];
    vkt__store_req q;
    size_t size = 0, n = put_req(b, VKT_STORE_OP_SET, "a/key", 5, 3, "abc");
    assert_int_equal(vkt__store_req_decode(b, 7, &q, &size), VKT_OK);
    assert_int_equal(size, VKT_STORE_REQ_HDR_BYTES); /* read the header first */
    assert_int_equal(vkt__store_req_decode(b, 16, &q, &size), VKT_OK);
    assert_int_equal(size, n);
    assert_int_equal(vkt__store_req_decode(b, n, &q, &size), VKT_OK);
    assert_true(q.op == VKT_STORE_OP_SET && q.keylen == 5 && q.arg == 3);
    assert_true(q.key == (const char *)b + 16 && q.val == b + 21);
    /* A key with a NUL byte would be stored as the text before it, so
     * "a\0b" would overwrite "a": refused (fuzz_store checks it too). */
    n = put_req(b, VKT_STORE_OP_SET, "a\0b", 3, 1, "v");
    assert_int_equal(vkt__store_req_decode(b, n, &q, &size), VKT_ERR_CORRUPT);
    assert_non_null(strstr(vkt_last_error(), "NUL"));
    n = put_req(b, 4, "k", 1, 0, NULL);
    assert_int_equal(vkt__store_req_decode(b, n, &q, &size), VKT_ERR_CORRUPT);
    assert_non_null(strstr(vkt_last_error(), "unknown operation 4"));
    n = put_req(b, VKT_STORE_OP_GET, "", 0, 0, NULL);
    assert_int_equal(vkt__store_req_decode(b, n, &q, &size), VKT_ERR_CORRUPT);
    put_req(b, VKT_STORE_OP_SET, "k", 1, 0, "");
    uint64_t big = (1u << 20) + 1;
    memcpy(b + 8, &big, 8);
    assert_int_equal(vkt__store_req_decode(b, 16, &q, &size), VKT_ERR_CORRUPT);
    assert_non_null(strstr(vkt_last_error(), "1048577 bytes"));
}

/* Over a real connection: the server drops a client that sends a NUL in a
 * key, and the key before the NUL is not written. */
static void test_tcp_store_refuses_nul_key(void **state)
{
    (void)state;
    char addr[64];
    void *srv = start_store(TEST_SECRET, addr, sizeof addr);
    assert_non_null(srv);
    vkt__auth auth;
    assert_int_equal(vkt__auth_init(&auth, TEST_SECRET, 0), VKT_OK);
    int port = atoi(strrchr(addr, ':') + 1), fd = -1;
    double dl = vkt__now() + 5;
    assert_int_equal(vkt__net_connect("127.0.0.1", port, dl, "store", &fd), VKT_OK);
    unsigned char nonce[VKT_AUTH_NONCE_BYTES], mac[VKT_AUTH_MAC_BYTES], ok = 0, b[64];
    uint32_t head[2] = {VKT_STORE_HELLO_MAGIC, VKT_AUTH_MAC_BYTES};
    assert_int_equal(vkt__net_read_all(fd, nonce, sizeof nonce, dl, "s"), VKT_OK);
    vkt__auth_mac(&auth, nonce, sizeof nonce, mac);
    assert_int_equal(vkt__net_write_all(fd, head, sizeof head, dl, "s"), VKT_OK);
    assert_int_equal(vkt__net_write_all(fd, mac, sizeof mac, dl, "s"), VKT_OK);
    assert_int_equal(vkt__net_read_all(fd, &ok, 1, dl, "s"), VKT_OK);
    assert_int_equal(ok, 1);
    size_t n = put_req(b, VKT_STORE_OP_SET, "a\0b", 3, 1, "v");
    assert_int_equal(vkt__net_write_all(fd, b, n, dl, "s"), VKT_OK);
    assert_int_equal(vkt__net_read_all(fd, b, 16, dl, "s"), VKT_ERR_REMOTE); /* closed */
    vkt__close(fd);
    vkt__store *s = connect_store(addr, TEST_SECRET, 0, NULL);
    assert_non_null(s);
    char buf[8];
    size_t len = 0;
    int found = 1;
    assert_int_equal(s->ops->try_get(s, "a", buf, sizeof buf, &len, &found), VKT_OK);
    assert_int_equal(found, 0);
    vkt__store_close(s);
    stop_store(srv);
}

static const char *store_addr_arg;

static int unauth_case(int rank, int world, void *arg)
{
    vkt_status st;
    unsetenv("VKT_JOB_SECRET");
    unsetenv("VKT_JOB_SECRET_FILE");
    if (connect_store(store_addr_arg, NULL, 1, &st) || st != VKT_ERR_REMOTE)
        return RANK_FAIL(rank, "an unauthenticated rank was let in (%d)", (int)st);
    return 0;
}

static void test_tcp_store_refuses_wrong_secret(void **state)
{
    (void)state;
    char addr[64];
    vkt_status st;
    void *srv = start_store(TEST_SECRET, addr, sizeof addr);
    assert_non_null(srv);
    assert_null(connect_store(addr, "some-other-secret", 0, &st));
    assert_int_equal(st, VKT_ERR_REMOTE);
    assert_non_null(strstr(vkt_last_error(), "refused this rank's job secret"));
    /* A rank without any secret is refused as well (in a child: the
     * environment it consults is cached per process). */
    store_addr_arg = addr;
    assert_int_equal(run_ranks(1, unauth_case, NULL, 10, NULL), 0);
    stop_store(srv);
}

/* Send len bytes of junk to the store at port as a plain socket would (the
 * nonce unread), and return how long the server took to close on it. */
static double send_junk(int port, const char *junk, size_t len)
{
    int fd = -1;
    char b[64];
    double t0 = vkt__now();
    assert_int_equal(vkt__net_connect("127.0.0.1", port, t0 + 2, "store", &fd), VKT_OK);
    assert_int_equal(vkt__net_write_all(fd, junk, len, t0 + 2, "s"), VKT_OK);
    /* It sends its nonce (and answer 2, "another protocol"), then closes,
     * while we stay open. */
    while (vkt__net_read_all(fd, b, 1, t0 + 15, "s") == VKT_OK) {
    }
    assert_null(strstr(vkt_last_error(), "within")); /* closed, not timed out */
    vkt__close(fd);
    return vkt__now() - t0;
}

static size_t count_in(const char *text, const char *what)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, what)); p++) n++;
    return n;
}

/* Bytes that are no vktrain hello are refused as such (with their count),
 * at once even when fewer than a hello and the sender keeps the connection
 * open; a real hello with a wrong HMAC is refused as a wrong secret; the
 * store serves on. The server runs in this process with stderr in a file,
 * so its log can be read back. */
static void test_tcp_store_tells_garbage_from_wrong_secret(void **state)
{
    (void)state;
    char log_path[] = "/tmp/vkt-store-log-XXXXXX", addr[64], text[4096] = "";
    int log_fd = mkstemp(log_path), saved = dup(2), port = 0;
    assert_true(log_fd >= 0 && saved >= 0);
    vkt__auth auth;
    vkt__store_server *srv = NULL;
    vkt_status st;
    assert_int_equal(vkt__auth_init(&auth, TEST_SECRET, 0), VKT_OK);
    fflush(stderr);
    dup2(log_fd, 2);
    st = vkt__store_tcp_serve("127.0.0.1", 0, &auth, &srv, &port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    char junk[100], http[] = "GET / HTTP/1.0\r\n\r\n";
    memset(junk, 0x5a, sizeof junk);
    double t_junk = st == VKT_OK ? send_junk(port, junk, sizeof junk) : 0;
    double t_get = st == VKT_OK ? send_junk(port, "GET", 3) : 0;
    double t_http = st == VKT_OK ? send_junk(port, http, strlen(http)) : 0;
    vkt_status wrong = VKT_OK;
    assert_null(connect_store(addr, "some-other-secret", 0, &wrong));
    vkt__store *s = connect_store(addr, TEST_SECRET, 0, NULL);
    vkt_status set = s ? vkt__store_set(s, "k", "v", 1) : VKT_ERR_REMOTE;
    vkt__store_close(s);
    vkt__store_tcp_stop(srv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(log_fd, text, sizeof text - 1, 0);
    close(log_fd);
    unlink(log_path);
    fprintf(stderr, "the store's log (closed on junk after %.2f, %.2f, %.2f s):\n%s", t_junk,
            t_get, t_http, n > 0 ? text : "");
    assert_int_equal(st, VKT_OK);
    assert_true(n > 0);
    assert_int_equal(wrong, VKT_ERR_REMOTE);
    assert_int_equal(set, VKT_OK); /* it keeps serving */
    const char *refused = "vktrain: store: refused connection from 127.0.0.1: ";
    char line[256];
    static const size_t sizes[] = {100, 3, sizeof http - 1};
    for (int i = 0; i < 3; i++) {
        snprintf(line, sizeof line, "%snot a vktrain store client (%zu bytes that are no "
                 "handshake; a port scanner or another program?)\n", refused, sizes[i]);
        assert_non_null(strstr(text, line));
    }
    snprintf(line, sizeof line, "%swrong job secret", refused);
    assert_int_equal(count_in(text, line), 1);
    assert_int_equal(count_in(text, "not a vktrain store client"), 3);
    /* Refused on the first wrong byte, not after the hello's 10 s wait. */
    assert_true(t_get < 3.0 && t_http < 3.0);
}

/* --------------------------------------------- connections that come and go -- */

/* Open descriptors of this process (the listing's own excluded). */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

/* A descriptor limit under which exactly n more descriptors can be opened
 * (new ones take the lowest free numbers, and the limit bounds the number;
 * the environment may leave holes, such as an inherited fd 251). */
static int room_for(int n)
{
    int f = 0;
    for (int free = 0;; f++)
        if (fcntl(f, F_GETFD) < 0 && ++free == n) break;
    return f + 1;
}

/* Redirect stderr into a fresh temporary file; returns the saved stderr. */
static int log_begin(int *log_fd, char *path)
{
    *log_fd = mkstemp(path);
    int saved = dup(2);
    assert_true(*log_fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(*log_fd, 2);
    return saved;
}

/* Undo log_begin and read the log back into text (cap bytes). */
static void log_end(int log_fd, int saved, const char *path, char *text, size_t cap)
{
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(log_fd, text, cap - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    close(log_fd);
    unlink(path);
}

/* 300 connections that come and go (junk that closes, connections closed
 * before the hello, real clients that set a key and leave) leave no
 * descriptor, thread or client slot behind once they are gone: the server's
 * open descriptors return to what it had before, and it serves on. */
static void test_tcp_store_reaps_finished_connections(void **state)
{
    (void)state;
    char path[] = "/tmp/vkt-store-log-XXXXXX", addr[64], text[1 << 16];
    int log_fd, saved = log_begin(&log_fd, path), port = 0;
    vkt__auth auth;
    vkt__store_server *srv = NULL;
    assert_int_equal(vkt__auth_init(&auth, TEST_SECRET, 0), VKT_OK);
    vkt_status st = vkt__store_tcp_serve("127.0.0.1", 0, &auth, &srv, &port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    int base = count_fds(), bad = 0, peak = 0;
    for (int i = 0; i < 300 && st == VKT_OK && !bad; i++) {
        int fd = -1;
        if (i % 3 == 2) { /* a real client */
            vkt__store *s = connect_store(addr, TEST_SECRET, 0, NULL);
            char key[32];
            snprintf(key, sizeof key, "k%d", i);
            bad = !s || vkt__store_set(s, key, "v", 1) != VKT_OK;
            vkt__store_close(s);
            continue;
        }
        bad = vkt__net_connect("127.0.0.1", port, vkt__now() + 2, "store", &fd) != VKT_OK;
        if (i % 3 == 0 && !bad) /* junk, then gone */
            bad = vkt__net_write_all(fd, "GET / HTTP/1.0\r\n\r\n", 18, vkt__now() + 2, "s");
        vkt__close(fd);
        int now = count_fds();
        peak = now > peak ? now : peak;
    }
    /* Finished clients are reaped on the next accept, or within about a
     * second when none comes. */
    int after = count_fds();
    for (double end = vkt__now() + 10; after > base && vkt__now() < end; after = count_fds())
        vkt__sleep_ms(50);
    vkt__store *s = connect_store(addr, TEST_SECRET, 0, NULL);
    char buf[8];
    size_t len = 0;
    vkt_status get = s ? vkt__store_get(s, "k299", buf, sizeof buf, &len) : VKT_ERR_REMOTE;
    vkt__store_close(s);
    vkt__store_tcp_stop(srv);
    log_end(log_fd, saved, path, text, sizeof text);
    fprintf(stderr, "store fds: %d before, %d at most meanwhile, %d after 300 connections\n",
            base, peak, after);
    assert_int_equal(st, VKT_OK);
    assert_false(bad);
    assert_int_equal(after, base);
    assert_int_equal(get, VKT_OK);
    assert_int_equal(count_in(text, "not a vktrain store client"), 100);
}

/* A server out of descriptors says so once, does not spin on accept, and
 * lets ranks in again once connections close. The server runs in a child
 * whose descriptor limit leaves room for 3 connections; 8 are opened and
 * held for 2 s, then closed. */
static void test_tcp_store_out_of_fds(void **state)
{
    (void)state;
    char path[] = "/tmp/vkt-store-log-XXXXXX", addr[64], text[4096];
    int pp[2], cp[2], port = 0, held[8], log_fd = mkstemp(path);
    assert_true(log_fd >= 0 && pipe(pp) == 0 && pipe(cp) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(pp[0]);
        close(cp[1]);
        alarm(60);
        dup2(log_fd, 2);
        vkt__auth auth;
        vkt__store_server *srv = NULL;
        if (vkt__auth_init(&auth, TEST_SECRET, 0) != VKT_OK ||
            vkt__store_tcp_serve("127.0.0.1", 0, &auth, &srv, &port) != VKT_OK)
            _exit(1);
        struct rlimit rl;
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = (rlim_t)room_for(3);
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(2);
        if (write(pp[1], &port, sizeof port) != (ssize_t)sizeof port) _exit(3);
        char b;
        while (read(cp[0], &b, 1) < 0 && errno == EINTR) {
        }
        vkt__store_tcp_stop(srv);
        _exit(0);
    }
    close(pp[1]);
    close(cp[0]);
    assert_int_equal(read(pp[0], &port, sizeof port), (ssize_t)sizeof port);
    close(pp[0]);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    for (int i = 0; i < 8; i++) /* complete in the listen backlog */
        assert_int_equal(vkt__net_connect("127.0.0.1", port, vkt__now() + 2, "store", &held[i]),
                         VKT_OK);
    vkt__sleep_ms(2000);
    for (int i = 0; i < 8; i++) vkt__close(held[i]);
    double t0 = vkt__now();
    vkt__store *s = connect_store(addr, TEST_SECRET, 0, NULL);
    double t_join = vkt__now() - t0;
    vkt_status set = s ? vkt__store_set(s, "k", "v", 1) : VKT_ERR_REMOTE;
    vkt__store_close(s);
    close(cp[1]);
    int wst = 0;
    struct rusage ru;
    assert_int_equal(wait4(pid, &wst, 0, &ru), pid);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                 ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
    ssize_t n = pread(log_fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    close(log_fd);
    unlink(path);
    fprintf(stderr, "out of fds: the server used %.3f s of CPU; a rank joined %.2f s after "
            "the connections closed; its log:\n%s", cpu, t_join, text);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    assert_int_equal(set, VKT_OK);
    assert_int_equal(count_in(text, "out of file descriptors"), 1);
    assert_true(cpu < 0.5); /* a spinning acceptor burns a core for the 2 s */
}

/* ------------------------------------------------ a store that misbehaves -- */

enum { FAKE_OTHER_PROTOCOL, FAKE_LATE_REPLY };

/* A one-connection fake store in a child: it sends a nonce and reads the
 * hello, then either answers 2 ("another protocol") and closes, or accepts,
 * reads one request and answers it only after stall_ms (as a stalled server
 * would). The child exits 3 when a second request arrives on the
 * connection, 0 otherwise. */
static pid_t fake_store(int mode, int stall_ms, int *port)
{
    int lfd = -1;
    assert_int_equal(vkt__net_listen("127.0.0.1", 0, &lfd, port), VKT_OK);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid != 0) {
        vkt__close(lfd);
        return pid;
    }
    alarm(60);
    int fd = accept(lfd, NULL, NULL);
    unsigned char nonce[VKT_AUTH_NONCE_BYTES] = {0}, hello[8 + VKT_AUTH_MAC_BYTES], ok;
    double dl = vkt__now() + 10;
    if (fd < 0 || vkt__net_write_all(fd, nonce, sizeof nonce, dl, "f") ||
        vkt__net_read_all(fd, hello, sizeof hello, dl, "f"))
        _exit(1);
    ok = mode == FAKE_OTHER_PROTOCOL ? 2 : 1;
    if (vkt__net_write_all(fd, &ok, 1, dl, "f")) _exit(1);
    if (mode == FAKE_OTHER_PROTOCOL) _exit(0);
    uint32_t head[4];
    char key[64];
    if (vkt__net_read_all(fd, head, sizeof head, dl, "f") || head[1] >= sizeof key ||
        vkt__net_read_all(fd, key, head[1], dl, "f"))
        _exit(1);
    vkt__sleep_ms(stall_ms);
    uint64_t resp[2] = {0, 42}; /* status ok, value 42 */
    (void)vkt__net_write_all(fd, resp, sizeof resp, dl, "f");
    char b;
    _exit(vkt__net_read_all(fd, &b, 1, dl, "f") == VKT_OK ? 3 : 0);
}

static int fake_exit(pid_t pid)
{
    int wst = 0;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    return WIFEXITED(wst) ? WEXITSTATUS(wst) : 100;
}

/* A request that times out loses the connection: the late reply is never
 * read as the answer to the next request, which fails at once, naming the
 * earlier error. */
static void test_tcp_store_timeout_loses_connection(void **state)
{
    (void)state;
    int port = 0;
    pid_t pid = fake_store(FAKE_LATE_REPLY, 800, &port);
    vkt__auth auth;
    vkt__store *s = NULL;
    assert_int_equal(vkt__auth_init(&auth, TEST_SECRET, 0), VKT_OK);
    assert_int_equal(vkt__store_tcp_connect("127.0.0.1", port, &auth, 0.3, &s), VKT_OK);
    int64_t v = 0;
    assert_int_equal(vkt__store_add(s, "ctr", 1, &v), VKT_ERR_TIMEOUT);
    vkt__sleep_ms(1200); /* the reply to the first request is here by now */
    char want[128];
    snprintf(want, sizeof want, "store connection to 127.0.0.1:%d lost after an earlier error "
             "(", port);
    double t0 = vkt__now();
    assert_int_equal(vkt__store_add(s, "ctr", 1, &v), VKT_ERR_TIMEOUT);
    assert_true(vkt__now() - t0 < 0.1); /* at once */
    assert_int_not_equal(v, 42);
    if (!strstr(vkt_last_error(), want)) fail_msg("message: %s", vkt_last_error());
    char buf[8];
    size_t len;
    int found;
    assert_int_equal(s->ops->try_get(s, "ctr", buf, sizeof buf, &len, &found), VKT_ERR_TIMEOUT);
    assert_non_null(strstr(vkt_last_error(), want));
    vkt__store_close(s);
    assert_int_equal(fake_exit(pid), 0); /* nothing more was sent on it */
}

/* A hello with another header (another vktrain version) gets answer 2, and
 * a client that gets 2 says "another protocol", not "wrong secret". */
static void test_tcp_store_other_protocol(void **state)
{
    (void)state;
    char path[] = "/tmp/vkt-store-log-XXXXXX", text[4096];
    int log_fd, saved = log_begin(&log_fd, path), port = 0, fd = -1;
    vkt__auth auth;
    vkt__store_server *srv = NULL;
    assert_int_equal(vkt__auth_init(&auth, TEST_SECRET, 0), VKT_OK);
    vkt_status st = vkt__store_tcp_serve("127.0.0.1", 0, &auth, &srv, &port);
    unsigned char nonce[VKT_AUTH_NONCE_BYTES], answer = 0xff, rest = 0;
    uint32_t hello[2 + VKT_AUTH_MAC_BYTES / 4] = {VKT_STORE_HELLO_MAGIC + 1, VKT_AUTH_MAC_BYTES};
    double dl = vkt__now() + 5;
    vkt_status rd = VKT_ERR_INTERNAL, eof = VKT_OK;
    if (st == VKT_OK &&
        vkt__net_connect("127.0.0.1", port, dl, "store", &fd) == VKT_OK &&
        vkt__net_read_all(fd, nonce, sizeof nonce, dl, "s") == VKT_OK) {
        vkt__auth_mac(&auth, nonce, sizeof nonce, (unsigned char *)&hello[2]);
        if (vkt__net_write_all(fd, hello, sizeof hello, dl, "s") == VKT_OK)
            rd = vkt__net_read_all(fd, &answer, 1, dl, "s");
        eof = vkt__net_read_all(fd, &rest, 1, dl, "s");
    }
    vkt__close(fd);
    vkt__store_tcp_stop(srv);
    log_end(log_fd, saved, path, text, sizeof text);
    assert_int_equal(st, VKT_OK);
    assert_int_equal(rd, VKT_OK);
    assert_int_equal(answer, 2);
    assert_int_equal(eof, VKT_ERR_REMOTE); /* then it closed */
    assert_non_null(strstr(text, "not a vktrain store client"));
    /* The client's side, against a store that answers 2. */
    pid_t pid = fake_store(FAKE_OTHER_PROTOCOL, 0, &port);
    vkt__store *s = NULL;
    assert_int_equal(vkt__store_tcp_connect("127.0.0.1", port, &auth, 5, &s), VKT_ERR_REMOTE);
    assert_null(s);
    char want[200];
    snprintf(want, sizeof want, "the store at 127.0.0.1:%d speaks another protocol (another "
             "vktrain version?); run the same vktrain build on every rank", port);
    if (!strstr(vkt_last_error(), want)) fail_msg("message: %s", vkt_last_error());
    assert_null(strstr(vkt_last_error(), "secret"));
    assert_int_equal(fake_exit(pid), 0);
}

static void test_file_store(void **state)
{
    (void)state;
    char dir[] = "/tmp/vkt-store-XXXXXX", addr[128];
    assert_non_null(mkdtemp(dir));
    snprintf(addr, sizeof addr, "file:%s", dir);
    vkt__store *s = connect_store(addr, TEST_SECRET, 0, NULL);
    assert_non_null(s);
    exercise(s);
    /* A store opened with another secret cannot read (or forge) entries. */
    vkt__store *o = connect_store(addr, "other", 0, NULL);
    char buf[16];
    size_t len;
    assert_int_equal(vkt__store_get(o, "ctr", buf, sizeof buf, &len), VKT_ERR_REMOTE);
    assert_non_null(strstr(vkt_last_error(), "not signed"));
    vkt__store_close(o);
    vkt__store_close(s);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static int add_many(int rank, int world, void *arg)
{
    vkt__store *s = connect_store(store_addr_arg, TEST_SECRET, 0, NULL);
    int64_t v;
    if (!s) return RANK_FAIL(rank, "connect: %s", vkt_last_error());
    for (int i = 0; i < 50; i++)
        if (vkt__store_add(s, "shared", 1, &v) != VKT_OK)
            return RANK_FAIL(rank, "add: %s", vkt_last_error());
    vkt__store_close(s);
    return 0;
}

/* Counters stay exact under concurrent adds from several processes. */
static void test_concurrent_add(void **state)
{
    (void)state;
    char addr[64], dir[] = "/tmp/vkt-store-XXXXXX", faddr[128];
    void *srv = start_store(TEST_SECRET, addr, sizeof addr);
    assert_non_null(mkdtemp(dir));
    snprintf(faddr, sizeof faddr, "file:%s", dir);
    const char *addrs[2] = {addr, faddr};
    for (int k = 0; k < 2; k++) {
        store_addr_arg = addrs[k];
        assert_int_equal(run_ranks(4, add_many, NULL, 30, NULL), 0);
        vkt__store *s = connect_store(addrs[k], TEST_SECRET, 0, NULL);
        int64_t v = 0;
        assert_int_equal(vkt__store_add(s, "shared", 0, &v), VKT_OK);
        assert_int_equal(v, 200);
        vkt__store_close(s);
    }
    stop_store(srv);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Child bodies: the environment is read once per process, so each case
 * runs in a fresh fork. */
static int secret_file_case(int rank, int world, void *arg)
{
    int mode = *(int *)arg;
    char path[] = "/tmp/vkt-secret-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, "s3cret\n", 7) != 7) return 2;
    close(fd);
    chmod(path, (mode_t)mode);
    setenv("VKT_JOB_SECRET_FILE", path, 1);
    unsetenv("VKT_JOB_SECRET");
    vkt__auth a;
    vkt_status st = vkt__auth_init(&a, NULL, 0);
    unlink(path);
    if (mode == 0600)
        return st == VKT_OK && a.enabled ? 0 : RANK_FAIL(rank, "%s", vkt_last_error());
    if (st != VKT_ERR_INVALID_USAGE || !strstr(vkt_last_error(), "chmod 600"))
        return RANK_FAIL(rank, "mode %o accepted or unclear: %s", mode, vkt_last_error());
    return 0;
}

static int no_secret_case(int rank, int world, void *arg)
{
    unsetenv("VKT_JOB_SECRET");
    unsetenv("VKT_JOB_SECRET_FILE");
    vkt__auth a;
    if (vkt__auth_init(&a, NULL, 0) != VKT_ERR_INVALID_USAGE)
        return RANK_FAIL(rank, "no secret was accepted");
    if (!strstr(vkt_last_error(), "allow_unauthenticated")) return RANK_FAIL(rank, "message");
    if (vkt__auth_init(&a, NULL, 1) != VKT_OK || a.enabled) return RANK_FAIL(rank, "allow");
    setenv("VKT_JOB_SECRET", "from-env", 1); /* cached as unset: still none */
    return 0;
}

static void test_secret_sources(void **state)
{
    (void)state;
    int loose = 0644, tight = 0600;
    assert_int_equal(run_ranks(1, secret_file_case, &loose, 10, NULL), 0);
    assert_int_equal(run_ranks(1, secret_file_case, &tight, 10, NULL), 0);
    assert_int_equal(run_ranks(1, no_secret_case, NULL, 10, NULL), 0);
}

static void test_comm_create_checks(void **state)
{
    (void)state;
    vkt_comm *c = (vkt_comm *)1;
    vkt_comm_opts o = test_opts(0, 1, NULL, 2);
    o.struct_size = 0;
    assert_int_equal(vkt_comm_create(&o, &c), VKT_ERR_INVALID_ARG);
    assert_null(c);
    o = test_opts(3, 2, "127.0.0.1:1", 2);
    assert_int_equal(vkt_comm_create(&o, &c), VKT_ERR_INVALID_ARG);
    o = test_opts(0, 2, "127.0.0.1:1", 2);
    o.backend = (vkt_comm_backend)7;
    assert_int_equal(vkt_comm_create(&o, &c), VKT_ERR_INVALID_ARG);
    if (!vkt__gloo_built()) { /* a build without libgloo-dev says how to get it */
        o.backend = VKT_COMM_BACKEND_GLOO;
        assert_int_equal(vkt_comm_create(&o, &c), VKT_ERR_UNSUPPORTED);
        assert_non_null(strstr(vkt_last_error(), "libgloo-dev"));
    } /* with Gloo: test_gloo.c */
    assert_int_equal(vkt_comm_create(NULL, &c), VKT_ERR_INVALID_ARG);
    vkt_comm_destroy(NULL);
    assert_int_equal(vkt_comm_rank(NULL), -1);
    assert_string_equal(vkt_comm_link(NULL), "invalid");
    o = test_opts(0, 1, NULL, 2); /* one rank: no store, no channels */
    assert_int_equal(vkt_comm_create(&o, &c), VKT_OK);
    assert_string_equal(vkt_comm_link(c), "none");
    float x[3] = {1, 2, 3}, y[3];
    assert_int_equal(vkt_comm_allreduce(c, x, y, 3, VKT_DTYPE_F32, VKT_REDOP_AVG), VKT_OK);
    assert_memory_equal(x, y, sizeof x);
    assert_int_equal(vkt_comm_barrier(c), VKT_OK);
    assert_int_equal(vkt_comm_broadcast(c, x, 3, VKT_DTYPE_F32, 1), VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt_comm_allreduce(c, NULL, y, 3, VKT_DTYPE_F32, VKT_REDOP_SUM),
                     VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt_comm_allreduce(c, x, y, 3, (vkt_dtype)9, VKT_REDOP_SUM),
                     VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt_comm_allreduce(c, x, y, 3, VKT_DTYPE_F32, (vkt_redop)9),
                     VKT_ERR_INVALID_ARG);
    assert_int_equal(vkt_comm_wait(NULL), VKT_ERR_INVALID_ARG);
    vkt_comm_destroy(c);
    assert_int_equal(vkt_comm_allreduce(NULL, NULL, NULL, 0, VKT_DTYPE_F32, VKT_REDOP_SUM),
                     VKT_ERR_INVALID_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_store),
        cmocka_unit_test(test_tcp_store_refuses_wrong_secret),
        cmocka_unit_test(test_tcp_store_tells_garbage_from_wrong_secret),
        cmocka_unit_test(test_tcp_store_reaps_finished_connections),
        cmocka_unit_test(test_tcp_store_out_of_fds),
        cmocka_unit_test(test_tcp_store_timeout_loses_connection),
        cmocka_unit_test(test_tcp_store_other_protocol),
        cmocka_unit_test(test_store_request_decode),
        cmocka_unit_test(test_tcp_store_refuses_nul_key),
        cmocka_unit_test(test_file_store),
        cmocka_unit_test(test_concurrent_add),
        cmocka_unit_test(test_secret_sources),
        cmocka_unit_test(test_comm_create_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
