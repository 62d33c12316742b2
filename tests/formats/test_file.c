/* Whole-file reads and atomic writes: round trip, size limit, missing file,
 * a failed write leaves the old file, no temporary file is left behind. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "formats/file.h"
#include "vktrain/alloc.h"

static char dir[64];

static int setup(void **state)
{
    strcpy(dir, "/tmp/vkt-test-file.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static int count_entries(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void round_trip(void **state)
{
    char path[128];
    snprintf(path, sizeof path, "%s/a.bin", dir);
    vkt_file_part parts[] = {{"hello ", 6}, {"world", 5}, {"", 0}};
    assert_int_equal(vkt__file_write_atomic(path, parts, 3), VKT_OK);
    void *data = NULL;
    size_t n = 0;
    assert_int_equal(vkt__file_read(path, 1 << 20, &data, &n), VKT_OK);
    assert_int_equal(n, 11);
    assert_string_equal(data, "hello world"); /* NUL-terminated */
    vkt_free(data);
    /* Overwrite: the new content replaces the old, no temporary left. */
    vkt_file_part again = {"x", 1};
    assert_int_equal(vkt__file_write_atomic(path, &again, 1), VKT_OK);
    assert_int_equal(vkt__file_read(path, 1 << 20, &data, &n), VKT_OK);
    assert_int_equal(n, 1);
    vkt_free(data);
    assert_int_equal(count_entries(), 1);
}

static void errors_name_the_path(void **state)
{
    char path[128];
    snprintf(path, sizeof path, "%s/missing.json", dir);
    void *data = (void *)1;
    size_t n = 7;
    assert_int_equal(vkt__file_read(path, 100, &data, &n), VKT_ERR_IO);
    assert_null(data);
    assert_non_null(strstr(vkt_last_error(), "missing.json"));

    snprintf(path, sizeof path, "%s/big", dir);
    vkt_file_part p = {"0123456789", 10};
    assert_int_equal(vkt__file_write_atomic(path, &p, 1), VKT_OK);
    assert_int_equal(vkt__file_read(path, 9, &data, &n), VKT_ERR_INVALID_ARG);
    assert_non_null(strstr(vkt_last_error(), "10 bytes"));
    assert_int_equal(vkt__file_read(dir, 100, &data, &n), VKT_ERR_IO); /* a directory */

    /* Writing into a directory that does not exist fails and names it. */
    snprintf(path, sizeof path, "%s/no/such/dir/f", dir);
    assert_int_equal(vkt__file_write_atomic(path, &p, 1), VKT_ERR_IO);
    assert_non_null(strstr(vkt_last_error(), "no/such/dir"));
}

/* A write that fails (the target is a directory, so rename fails) leaves
 * what was there and no temporary file. */
static void failed_write_keeps_old(void **state)
{
    char path[128];
    snprintf(path, sizeof path, "%s/d", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    char inner[160];
    snprintf(inner, sizeof inner, "%s/keep", path);
    vkt_file_part p = {"old", 3};
    assert_int_equal(vkt__file_write_atomic(inner, &p, 1), VKT_OK);
    vkt_file_part q = {"new", 3};
    assert_int_equal(vkt__file_write_atomic(path, &q, 1), VKT_ERR_IO);
    assert_non_null(strstr(vkt_last_error(), "rename"));
    void *data = NULL;
    size_t n = 0;
    assert_int_equal(vkt__file_read(inner, 100, &data, &n), VKT_OK);
    assert_memory_equal(data, "old", 3);
    vkt_free(data);
    assert_int_equal(count_entries(), 1); /* only d/ */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(errors_name_the_path, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_write_keeps_old, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
