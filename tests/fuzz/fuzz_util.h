/* Helpers shared by the libFuzzer targets (tests/fuzz/fuzz_*.c): a scratch
 * directory for the parsers that read files, and FUZZ_CHECK for invariants
 * (a parse that succeeds must give sane results; one that fails must say
 * why). A failed check aborts, which libFuzzer reports as a crash and
 * saves the input. */
#ifndef VKT_FUZZ_UTIL_H
#define VKT_FUZZ_UTIL_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vktrain/status.h"

#define FUZZ_CHECK(cond)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s (last error: %s)\n", \
                    __FILE__, __LINE__, #cond, vkt_last_error());                  \
            abort();                                                               \
        }                                                                          \
    } while (0)

/* A failed parse must leave a message that says what is wrong. With
 * VKT_FUZZ_VERBOSE=1 the message is printed (to see why a seed or a saved
 * input is refused: run the target on the file). */
#define FUZZ_CHECK_FAILED(st)                                                      \
    do {                                                                           \
        FUZZ_CHECK((st) != VKT_OK && vkt_last_error()[0] != '\0');                 \
        if (getenv("VKT_FUZZ_VERBOSE"))                                           \
            fprintf(stderr, "fuzz: refused: %s\n", vkt_last_error());              \
    } while (0)

static char fuzz_dir_[64];

static inline void fuzz_rmdir_(void)
{
    /* the targets write a few fixed names only */
    static const char *const names[] = {"in.bin", "in2.bin", "index.json"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", fuzz_dir_, names[i]);
        unlink(p);
    }
    rmdir(fuzz_dir_);
}

/* A private directory for this process, removed at exit. */
static inline const char *fuzz_dir(void)
{
    if (!fuzz_dir_[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "%s/vkt-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fuzz_dir_)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_rmdir_);
    }
    return fuzz_dir_;
}

/* Write n bytes to fuzz_dir()/name (replacing it); returns the path (static). */
static inline const char *fuzz_file(const char *name, const uint8_t *data, size_t n)
{
    static char path[2][128];
    static int which;
    char *p = path[which ^= 1]; /* two live paths: the IDX target needs both */
    snprintf(p, sizeof path[0], "%s/%s", fuzz_dir(), name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (n && write(fd, data, n) != (ssize_t)n) || close(fd) != 0) {
        perror("fuzz: writing the input file");
        abort();
    }
    return p;
}

#endif
