/* Reader of the test fixtures written by tools/fixtures/fixture_io.py. */
#ifndef VKT_TEST_FIXTURE_H
#define VKT_TEST_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct fixture fixture;

/* Load path (relative paths are taken from the fixture directory, which
 * tests get as VKT_FIXTURE_DIR at compile time); fails the test on error. */
fixture *fixture_load(const char *path);
void fixture_free(fixture *f);
/* The array called name (fails the test if missing or of another type). */
const float *fixture_f32(const fixture *f, const char *name, size_t *count);
const int32_t *fixture_i32(const fixture *f, const char *name, size_t *count);

/* Fail unless max |got - want| ≤ rel · max |want| (printing the worst). */
void fixture_expect_close(const char *what, const float *got, const float *want, size_t n,
                          double rel);

#endif
