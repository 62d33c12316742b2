/* vktrain train: the progress line (rank 0), per-rank JSONL metrics, the
 * final summary and the loss plot. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/train.h"

const char *train_fmt_duration(char *buf, size_t cap, double s)
{
    if (s < 0) s = 0;
    uint64_t t = (uint64_t)(s + 0.5);
    if (t < 60) snprintf(buf, cap, "%" PRIu64 "s", t);
    else if (t < 3600) snprintf(buf, cap, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
    else snprintf(buf, cap, "%" PRIu64 "h%02" PRIu64 "m", t / 3600, t / 60 % 60);
    return buf;
}

/* "{rank}" in the path becomes the rank; without it only rank 0 writes. */
static int open_metrics(train_job *j)
{
    const char *p = j->o.metrics, *at = p ? strstr(p, "{rank}") : NULL;
    if (!p || (!at && j->rank != 0)) return 0;
    char path[4096];
    if (at) snprintf(path, sizeof path, "%.*s%d%s", (int)(at - p), p, j->rank, at + 6);
    else snprintf(path, sizeof path, "%s", p);
    j->metrics = fopen(path, j->o.resume ? "a" : "w");
    if (!j->metrics)
        return cli_fail(VKT_ERROR(VKT_ERR_IO, "cannot open the metrics file %s: %m", path),
                        "train");
    return 0;
}

int train_report_open(train_job *j)
{
    j->t_start = j->t_last = cli_now_s();
    /* after a resume, rates and the ETA count only this run's work */
    j->steps_at_start = vkt_engine_global_steps(j->e);
    j->samples_at_start = j->samples_at_last = vkt_engine_global_samples(j->e);
    if (!j->o.print_every) {
        j->o.print_every = j->total_updates / 50;
        if (j->o.print_every < 1) j->o.print_every = 1;
    }
    return open_metrics(j);
}

static void add_point(train_point **v, uint32_t *n, uint32_t *cap, train_point p)
{
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 64;
        train_point *g = realloc(*v, c * sizeof *g);
        if (!g) return; /* the curve loses a point; training goes on */
        *v = g, *cap = c;
    }
    (*v)[(*n)++] = p;
}

int train_report_update(train_job *j, uint64_t epoch, float micro_loss)
{
    uint64_t step = vkt_engine_global_steps(j->e);
    j->loss_sum += micro_loss;
    j->loss_count++;
    if (j->metrics)
        fprintf(j->metrics,
                "{\"step\":%" PRIu64 ",\"epoch\":%" PRIu64 ",\"rank\":%d,\"loss\":%.6g,"
                "\"lr\":%.6g,\"loss_scale\":%g,\"grad_norm\":%.6g,\"time_s\":%.3f}\n",
                step, epoch, j->rank, micro_loss, vkt_engine_lr(j->e),
                vkt_engine_loss_scale(j->e), vkt_engine_grad_norm(j->e),
                cli_now_s() - j->t_start);
    if (step % j->o.print_every && step != j->total_updates) return 0;
    /* The same updates on every rank: the loss mean is a collective. */
    double s[2] = {j->loss_sum, (double)j->loss_count};
    if (j->comm) {
        vkt_status st = vkt_comm_allreduce(j->comm, s, s, 2, VKT_DTYPE_F64, VKT_REDOP_SUM);
        if (st != VKT_OK) return cli_fail(st, "train: reporting");
    }
    j->loss_sum = 0, j->loss_count = 0;
    double loss = s[1] > 0 ? s[0] / s[1] : 0, now = cli_now_s();
    j->last_train_loss = loss;
    if (j->rank != 0) return 0;
    add_point(&j->curve, &j->ncurve, &j->cap_curve, (train_point){step, loss, -1});
    uint64_t samples = vkt_engine_global_samples(j->e);
    double rate = now > j->t_last ? (double)(samples - j->samples_at_last) / (now - j->t_last) : 0;
    uint64_t done = step - j->steps_at_start;
    double per_update = (now - j->t_start) / (double)(done ? done : 1);
    char eta[32], el[32];
    const char *unit = j->gpt ? "tokens/s" : "samples/s";
    if (j->gpt) rate *= j->o.context;
    bool tty = isatty(STDOUT_FILENO);
    printf("%sstep %" PRIu64 "/%" PRIu64 "  epoch %" PRIu64 "  loss %.4f  lr %.3g  %.0f %s  "
           "elapsed %s  ETA %s%s",
           tty ? "\r\033[K" : "", step, j->total_updates, epoch + 1, loss, vkt_engine_lr(j->e),
           rate, unit, train_fmt_duration(el, sizeof el, now - j->t_start),
           train_fmt_duration(eta, sizeof eta, per_update * (double)(j->total_updates - step)),
           tty ? "" : "\n");
    fflush(stdout);
    j->t_last = now, j->samples_at_last = samples;
    return 0;
}

void train_report_eval(train_job *j, uint64_t epoch, double loss, double acc)
{
    uint64_t step = vkt_engine_global_steps(j->e);
    j->last_eval_loss = loss, j->last_eval_acc = acc;
    if (j->metrics)
        fprintf(j->metrics,
                "{\"step\":%" PRIu64 ",\"epoch\":%" PRIu64 ",\"rank\":%d,\"eval_loss\":%.6g%s",
                step, epoch, j->rank, loss, j->gpt ? "}\n" : ",");
    if (j->metrics && !j->gpt) fprintf(j->metrics, "\"eval_accuracy\":%.4f}\n", acc);
    if (j->rank != 0) return;
    add_point(&j->evals, &j->nevals, &j->cap_evals, (train_point){step, loss, j->gpt ? -1 : acc});
    if (isatty(STDOUT_FILENO)) printf("\n");
    if (j->gpt)
        printf("eval at step %" PRIu64 ": validation loss %.4f\n", step, loss);
    else
        printf("eval at step %" PRIu64 " (epoch %" PRIu64 "): test loss %.4f, test accuracy "
               "%.2f%%\n", step, epoch + 1, loss, acc);
    fflush(stdout);
}

/* gnuplot draws the train and eval losses into o.plot. */
static void plot(const train_job *j)
{
    char dat[] = "/tmp/vktrain-plot-XXXXXX";
    int fd = mkstemp(dat);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        fprintf(stderr, "vktrain train: --plot: cannot write a temporary file\n");
        return;
    }
    for (uint32_t i = 0; i < j->ncurve; i++)
        fprintf(f, "%" PRIu64 " %g\n", j->curve[i].step, j->curve[i].loss);
    fprintf(f, "\n\n");
    for (uint32_t i = 0; i < j->nevals; i++)
        fprintf(f, "%" PRIu64 " %g\n", j->evals[i].step, j->evals[i].loss);
    fclose(f);
    /* The script goes in a file (the output path never meets a shell);
     * cmd_train refused paths with quotes, which gnuplot's strings cannot hold. */
    char gp[] = "/tmp/vktrain-plot-XXXXXX";
    int gfd = mkstemp(gp);
    FILE *g = gfd >= 0 ? fdopen(gfd, "w") : NULL;
    int rc = -1;
    if (g) {
        fprintf(g, "set terminal png size 900,540\nset output '%s'\nset xlabel 'update'\n"
                   "set ylabel 'loss'\nset grid\nplot '%s' index 0 with lines title 'train', "
                   "'%s' index 1 with linespoints title '%s'\n",
                j->o.plot, dat, dat, j->gpt ? "validation" : "test");
        fclose(g);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "gnuplot %s 2>&1", gp); /* mkstemp's name: safe characters */
        rc = system(cmd);
        unlink(gp);
    }
    unlink(dat);
    if (rc == 0) printf("loss curves: %s\n", j->o.plot);
    else fprintf(stderr, "vktrain train: --plot: gnuplot failed (is it installed? apt-get "
                         "install gnuplot-nox)\n");
}

void train_report_summary(train_job *j)
{
    if (j->rank != 0) return;
    if (isatty(STDOUT_FILENO)) printf("\n");
    double t = cli_now_s() - j->t_start;
    uint64_t steps = vkt_engine_global_steps(j->e);
    uint64_t samples = vkt_engine_global_samples(j->e) - j->samples_at_start;
    char d[32];
    double rate = t > 0 ? (double)samples / t : 0;
    printf("done: %" PRIu64 " updates (%" PRIu64 " in this run), %" PRIu64 " samples in %s "
           "(%.0f %s, %d rank%s, %s)\n",
           steps, steps - j->steps_at_start, samples, train_fmt_duration(d, sizeof d, t),
           j->gpt ? rate * j->o.context : rate, j->gpt ? "tokens/s" : "samples/s", j->world,
           j->world == 1 ? "" : "s", vkt_device_get_caps(j->dev)->name);
    printf("final train loss %.4f", j->last_train_loss);
    if (j->gpt) {
        printf(", validation loss %.4f\n", j->last_eval_loss);
        if (j->bigram_loss >= 0)
            printf("bigram baseline (counted on the training split, add-one smoothing): "
                   "validation loss %.4f -> the model is %s\n", j->bigram_loss,
                   j->last_eval_loss < j->bigram_loss ? "better" : "NOT better");
    } else {
        printf(", test loss %.4f\n", j->last_eval_loss);
        printf("test accuracy: %.1f%%\n", j->last_eval_acc);
    }
    if (j->o.plot) plot(j);
    fflush(stdout);
}

void train_report_close(train_job *j)
{
    if (j->metrics) fclose(j->metrics);
    free(j->curve);
    free(j->evals);
}
