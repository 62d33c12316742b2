/* See idx_fixture.h. */
#include "idx_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

#include <cmocka.h>

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static uint64_t lcg(uint64_t *s)
{
    return *s = *s * 6364136223846793005ull + 1442695040888963407ull;
}

void tidx_write(const char *dir, const char *prefix, uint32_t n, uint64_t seed, bool gz)
{
    size_t ibytes = 16 + (size_t)n * 16, lbytes = 8 + n;
    uint8_t *im = calloc(ibytes, 1), *lb = calloc(lbytes, 1);
    assert_non_null(im);
    assert_non_null(lb);
    be32(im, 0x803), be32(im + 4, n), be32(im + 8, 4), be32(im + 12, 4);
    be32(lb, 0x801), be32(lb + 4, n);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)(lcg(&seed) >> 60) % 4;
        lb[8 + i] = (uint8_t)c;
        for (uint32_t p = 0; p < 16; p++) {
            uint32_t quad = (p / 8) * 2 + (p % 4) / 2;
            im[16 + (size_t)i * 16 + p] = (uint8_t)((quad == c ? 150 : 0) + (lcg(&seed) >> 58));
        }
    }
    char path[400];
    const char *names[2] = {"images-idx3-ubyte", "labels-idx1-ubyte"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s-%s%s", dir, prefix, names[k], gz ? ".gz" : "");
        const uint8_t *data = k ? lb : im;
        size_t len = k ? lbytes : ibytes;
        if (gz) {
            gzFile g = gzopen(path, "wb");
            assert_non_null(g);
            assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
            gzclose(g);
        } else {
            FILE *f = fopen(path, "wb");
            assert_non_null(f);
            assert_int_equal(fwrite(data, 1, len, f), len);
            fclose(f);
        }
    }
    free(im);
    free(lb);
}
