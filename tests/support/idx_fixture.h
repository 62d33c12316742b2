/* A small synthetic IDX data set for the CLI tests: n images of 4x4 in
 * 4 classes (class c lights quadrant c brightly, plus noise), written as
 * DIR/PREFIX-images-idx3-ubyte and DIR/PREFIX-labels-idx1-ubyte (".gz"
 * appended and gzip'd when gz). Fails the running cmocka test on an I/O
 * error. */
#ifndef VKT_TEST_IDX_FIXTURE_H
#define VKT_TEST_IDX_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

void tidx_write(const char *dir, const char *prefix, uint32_t n, uint64_t seed, bool gz);

#endif
