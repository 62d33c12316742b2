/* train_mlp: the smallest complete use of libvktrain — an MLP learns a
 * synthetic classification task (labels from a fixed random "teacher") in
 * one process on the default Vulkan device, with AdamW.
 *
 *   build/examples/train_mlp [steps]
 *
 * Prints the loss as it goes; the task is learnable, so the loss falls far
 * below chance (ln 8 = 2.08 for 8 classes). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <vktrain/vktrain.h>

#define IN 32
#define CLASSES 8
#define BATCH 64

static float teacher[IN][CLASSES];

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float uniform(void) /* xorshift64*, [-1, 1) */
{
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return (float)((rng * 0x2545f4914f6cdd1dull) >> 40) / (float)(1 << 23) - 1.0f;
}

static void make_batch(float *x, int32_t *y)
{
    for (int b = 0; b < BATCH; b++) {
        float best = -INFINITY;
        for (int i = 0; i < IN; i++) x[b * IN + i] = uniform();
        for (int c = 0; c < CLASSES; c++) {
            float z = 0;
            for (int i = 0; i < IN; i++) z += x[b * IN + i] * teacher[i][c];
            if (z > best) best = z, y[b] = c;
        }
    }
}

static int fail(const char *what)
{
    fprintf(stderr, "train_mlp: %s: %s\n", what, vkt_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 300;
    for (int i = 0; i < IN; i++)
        for (int c = 0; c < CLASSES; c++) teacher[i][c] = uniform();
    vkt_device *dev;
    if (vkt_device_create(NULL, &dev) != VKT_OK) return fail("open device");
    uint32_t sizes[] = {IN, 64, 64, CLASSES};
    vkt_mlp_opts mo = VKT_MLP_OPTS_INIT;
    mo.layers = 3;
    mo.sizes = sizes;
    mo.activation = VKT_ACTIVATION_GELU;
    mo.seed = 1;
    vkt_model *m;
    if (vkt_model_create_mlp(dev, &mo, &m) != VKT_OK) return fail("create model");
    printf("train_mlp: %llu parameters on %s, %d steps of %d samples, AdamW\n",
           (unsigned long long)vkt_model_num_params(m), vkt_device_get_caps(dev)->name, steps,
           BATCH);
    vkt_optim_opts opt = VKT_OPTIM_OPTS_INIT;
    opt.type = VKT_OPTIM_ADAMW;
    opt.weight_decay = 0.01f;
    float x[BATCH * IN], first = 0, avg = 0, loss = 0;
    int32_t y[BATCH];
    for (int step = 1; step <= steps; step++) {
        make_batch(x, y);
        vkt_batch b = {.size = BATCH, .inputs = x, .labels = y};
        if (vkt_model_zero_grad(m) || vkt_model_forward(m, &b, &loss) ||
            vkt_model_backward(m) || vkt_model_step(m, &opt, 3e-3f))
            return fail("training step");
        if (step == 1) first = loss;
        avg = step == 1 ? loss : 0.9f * avg + 0.1f * loss;
        if (step == 1 || step % 50 == 0 || step == steps)
            printf("step %4d  loss %.4f  (running mean %.4f)\n", step, loss, avg);
    }
    printf("loss: first %.4f, final running mean %.4f, chance %.4f\n", first, avg,
           log((double)CLASSES));
    vkt_model_destroy(m);
    vkt_device_destroy(dev);
    return avg < 0.5f * first ? 0 : 1;
}
