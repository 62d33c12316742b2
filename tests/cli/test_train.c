/* `vktrain train` and `vktrain sample` as processes, on small data sets the
 * test writes: a 4-class IDX image set (gzip and raw) learned by an MLP
 * with 2 ranks (accuracy, per-rank metrics, checkpoint, resume), damaged
 * files, usage errors, and a byte-level GPT on a text whose next character
 * depends on more than the previous one (so it must beat the bigram
 * baseline), then sampled from its checkpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "idx_fixture.h"

static const char *exe;
static char dir[256];
static char out[1 << 17], err[1 << 16];

static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = 0;
    if (f) fclose(f);
}

/* Run "exe ARGS" through the shell with env prefix; capture stdout/stderr. */
static int run(const char *env, const char *fmt, ...)
{
    char args[4096], cmd[8192], o[300], e[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(o, sizeof o, "%s/stdout", dir);
    snprintf(e, sizeof e, "%s/stderr", dir);
    snprintf(cmd, sizeof cmd, "cd %s && %s %s %s > %s 2> %s", dir, env ? env : "", exe, args, o, e);
    int rc = system(cmd);
    slurp(o, out, sizeof out);
    slurp(e, err, sizeof err);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/vkt-test-train-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The number after "test accuracy: " in out, or -1. */
static double accuracy(void)
{
    const char *p = strstr(out, "test accuracy: ");
    return p ? atof(p + 15) : -1;
}

static void test_mlp_two_ranks(void **state)
{
    tidx_write(dir, "train", 1024, 1, true);
    tidx_write(dir, "t10k", 250, 2, false); /* 125 per rank: the last eval batch is padded */
    int rc = run(NULL, "launch -n 2 -- %s train --data . --hidden 32 --batch 16 --epochs 3 "
                 "--lr 0.01 --ckpt-dir ck --metrics m{rank}.jsonl --seed 3", exe);
    if (rc) fprintf(stderr, "%s\n%s\n", out, err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "on 2 ranks"));
    assert_non_null(strstr(out, "32 updates per epoch"));
    assert_non_null(strstr(out, "eval at step 32 (epoch 1)"));
    double acc = accuracy();
    assert_true(acc >= 95.0); /* the classes are separable */
    /* every rank wrote its metrics, one line per update plus evaluations */
    char path[400], text[1 << 15];
    for (int r = 0; r < 2; r++) {
        snprintf(path, sizeof path, "%s/m%d.jsonl", dir, r);
        slurp(path, text, sizeof text);
        assert_non_null(strstr(text, "\"step\":96,"));
        assert_non_null(strstr(text, "\"eval_accuracy\":"));
    }
    snprintf(path, sizeof path, "%s/ck/latest", dir);
    struct stat sb;
    assert_int_equal(lstat(path, &sb), 0);

    /* resume: two more epochs continue at update 96 */
    rc = run(NULL, "launch -n 2 -- %s train --data . --hidden 32 --batch 16 --epochs 5 "
             "--lr 0.01 --ckpt-dir ck --resume --seed 3", exe);
    if (rc) fprintf(stderr, "%s\n%s\n", out, err);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "resumed from ck at update 96"));
    assert_non_null(strstr(out, "done: 160 updates (64 in this run)"));
    assert_true(accuracy() >= 95.0);
    /* the resumed run continued where it stopped: same data position,
     * weights and optimizer state as 5 epochs straight */
    char resumed[256];
    const char *ev = strstr(out, "eval at step 160");
    assert_non_null(ev);
    snprintf(resumed, sizeof resumed, "%.*s", (int)strcspn(ev, "\n"), ev);
    rc = run(NULL, "launch -n 2 -- %s train --data . --hidden 32 --batch 16 --epochs 5 "
             "--lr 0.01 --seed 3", exe);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, resumed));

    /* resuming a finished run says so instead of printing zeros */
    rc = run(NULL, "launch -n 2 -- %s train --data . --hidden 32 --batch 16 --epochs 5 "
             "--lr 0.01 --ckpt-dir ck --resume --seed 3", exe);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "nothing to train"));
}

/* vktrain.rank_batch "auto" with ZeRO-2 (whose gradient slots refuse the
 * probe's plain backward, so the probe must run first): a timing probe
 * splits the 48 samples of the global micro-batch between the ranks (both
 * on one device here, so any split is right: this checks the mechanics);
 * the split goes into checkpoints. */
static void test_rank_batch_auto(void **state)
{
    tidx_write(dir, "train", 512, 1, false);
    tidx_write(dir, "t10k", 64, 2, false);
    char path[400];
    snprintf(path, sizeof path, "%s/auto.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"train_batch_size\": 48, \"optimizer\": {\"type\": \"AdamW\"},"
          " \"zero_optimization\": {\"stage\": 2, \"reduce_bucket_size\": 100},"
          " \"vktrain\": {\"rank_batch\": \"auto\"}}", f);
    fclose(f);
    int rc = run(NULL, "launch -n 2 -- %s train --data . --hidden 16 --config auto.json --steps 10 "
                 "--ckpt-dir ck", exe);
    if (rc) fprintf(stderr, "%s\n%s\n", out, err);
    assert_int_equal(rc, 0);
    /* printed on rank 0's stderr, which the launcher passes on */
    const char *p = strstr(err, "micro-batches ");
    if (!p) p = strstr(out, "micro-batches ");
    assert_non_null(p);
    unsigned a = 0, b = 0, sum = 0;
    assert_int_equal(sscanf(p, "micro-batches %u / %u (sum %u)", &a, &b, &sum), 3);
    assert_int_equal(sum, 48);
    assert_int_equal(a + b, 48);
    assert_true(a >= 1 && b >= 1);
    snprintf(path, sizeof path, "%s/ck/step-000010/index.json", dir);
    json_error_t je;
    json_t *x = json_load_file(path, 0, &je);
    assert_non_null(x);
    json_t *cfg = json_object_get(x, "config");
    json_t *rb = json_object_get(json_object_get(cfg, "vktrain"), "rank_batch");
    if (a == b) { /* an even split is written as DeepSpeed's micro batch */
        assert_null(rb);
        assert_int_equal(json_integer_value(json_object_get(cfg, "train_micro_batch_size_per_gpu")),
                         a);
    } else {
        assert_int_equal(json_array_size(rb), 2);
        assert_int_equal(json_integer_value(json_array_get(rb, 0)), a);
        assert_int_equal(json_integer_value(json_array_get(rb, 1)), b);
    }
    json_decref(x);
}

static void test_bad_input(void **state)
{
    tidx_write(dir, "train", 64, 1, false);
    tidx_write(dir, "t10k", 32, 2, false);
    /* a truncated training image file */
    char path[400];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    assert_int_equal(truncate(path, 16 + 64 * 16 - 5), 0);
    assert_int_equal(run(NULL, "train --data . --hidden 8 --batch 8"), 1);
    assert_non_null(strstr(err, "train-images-idx3-ubyte"));
    assert_non_null(strstr(err, "truncated"));
    /* test images of another size than the training images */
    tidx_write(dir, "train", 64, 1, false);
    uint8_t small[16 + 4 * 4] = {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2};
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(small, 1, sizeof small, f), sizeof small);
    fclose(f);
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte", dir);
    assert_int_equal(truncate(path, 8 + 4), 0);
    uint8_t four[4] = {0, 0, 0, 4};
    f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 4, SEEK_SET);
    assert_int_equal(fwrite(four, 1, 4, f), 4);
    fclose(f);
    assert_int_equal(run(NULL, "train --data . --hidden 8 --batch 8"), 1);
    assert_non_null(strstr(err, "does not match the training set"));
    /* a directory without the files */
    assert_int_equal(run(NULL, "train --data ./nothing-here --batch 8"), 1);
    assert_non_null(strstr(err, "nothing-here"));
    /* usage errors */
    assert_int_equal(run(NULL, "train --model cnn"), 2);
    assert_non_null(strstr(err, "--model is mlp or gpt"));
    assert_int_equal(run(NULL, "train --batch 0"), 2);
    assert_int_equal(run(NULL, "train --config x.json --batch 8"), 2);
    assert_non_null(strstr(err, "put them in the config file"));
    assert_int_equal(run(NULL, "train --config x.json --lr 0.1"), 2);
    assert_int_equal(run(NULL, "train --hidden 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"), 2);
    assert_int_equal(run(NULL, "train --plot \"a'b.png\""), 2);
    assert_int_equal(run(NULL, "sample x --temperature 1x"), 2);
    assert_non_null(strstr(err, "--temperature"));
    assert_int_equal(run(NULL, "sample x --tokens -1"), 2);
    assert_non_null(strstr(err, "--tokens"));
    assert_int_equal(run(NULL, "train --resume"), 2);
    assert_int_equal(run(NULL, "train --dropout 1"), 2);
    assert_non_null(strstr(err, "--dropout"));
    assert_int_equal(run(NULL, "sample ./nothing-here"), 1);
    assert_non_null(strstr(err, "model.json"));
}

/* Words whose letters repeat a pattern that needs two characters of
 * context: after "a", "b" or "c" comes "x" or "y" depending on the letter
 * before. */
static void write_text(const char *name, size_t n)
{
    static const char *const words[] = {"pax ", "qay ", "rbx ", "sby ", "tcx ", "ucy "};
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    uint64_t s = 7;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        fputs(words[(s >> 33) % 6], f);
    }
    fclose(f);
}

static void test_gpt_and_sample(void **state)
{
    write_text("text.txt", 6000);
    int rc = run(NULL, "launch -n 2 -- %s train --model gpt --data text.txt --layers 1 "
                 "--heads 2 --width 32 --context 16 --batch 8 --epochs 2 --lr 0.01 --zero 2 "
                 "--eval-batches 4 --ckpt-dir g --dropout 0.1", exe);
    if (rc) fprintf(stderr, "%s\n%s\n", out, err);
    assert_int_equal(rc, 0);
    const char *v = strstr(out, "validation loss "), *b = strstr(out, "bigram baseline");
    assert_non_null(v);
    assert_non_null(b);
    const char *bv = strstr(b, "validation loss ");
    assert_non_null(bv);
    /* the summary line: "final train loss X, validation loss Y" */
    const char *fin = strstr(out, "final train loss");
    assert_non_null(fin);
    double val = atof(strstr(fin, "validation loss ") + 16), big = atof(bv + 16);
    assert_true(big > 0.5);
    assert_true(val < 0.8 * big);
    assert_non_null(strstr(out, "the model is better"));
    char path[400];
    snprintf(path, sizeof path, "%s/g/model.json", dir);
    json_error_t je;
    json_t *mj = json_load_file(path, 0, &je);
    assert_non_null(mj);
    assert_float_equal(json_real_value(json_object_get(mj, "dropout")), 0.1, 1e-12);
    json_decref(mj);

    /* Every training window starts at a word (16 = 4 words of 4), and the
     * model uses its absolute positions: sample within one context. */
    rc = run(NULL, "sample g --prompt pa --tokens 12 --seed 5 --temperature 0.1");
    if (rc) fprintf(stderr, "%s\n%s\n", out, err);
    assert_int_equal(rc, 0);
    assert_int_equal(strlen(out), 15); /* prompt + 12 tokens + newline */
    assert_memory_equal(out, "pa", 2);
    /* the model learned the pattern: the prompt "pa" goes on with "x" */
    assert_int_equal(out[2], 'x');
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_train PATH/TO/vktrain\n");
        return 2;
    }
    exe = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mlp_two_ranks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rank_batch_auto, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gpt_and_sample, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
