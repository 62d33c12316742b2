/* vktrain train: the job's state, shared by cmd_train.c (options and the
 * loop), train_data.c (data, batches, evaluation) and train_report.c
 * (progress, metrics, summary, plot). */
#ifndef VKT_CLI_TRAIN_H
#define VKT_CLI_TRAIN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core_int.h"
#include "vktrain/data.h"
#include "vktrain/vktrain.h"

typedef struct train_opts {
    const char *config;  /* DeepSpeed JSON; NULL: built from the flags below */
    const char *model;   /* "mlp" or "gpt" */
    const char *data;    /* IDX directory (mlp) or text / .bin file (gpt) */
    const char *hidden;  /* mlp hidden widths, "1024,1024" */
    uint32_t layers, heads, width, context; /* gpt */
    const char *dtype;   /* f32, f16, bf16 (no --config) */
    uint32_t batch;      /* micro-batch per rank (no --config) */
    double lr;           /* (no --config) */
    uint32_t zero;       /* ZeRO stage (no --config) */
    uint32_t epochs;     /* epoch cap */
    uint64_t steps;      /* update cap (0: epochs decide) */
    uint64_t eval_every; /* updates between evaluations (0: each epoch) */
    uint32_t eval_batches; /* gpt: validation micro-batches per rank (0: all) */
    double target;       /* stop once test accuracy (%) reaches it; 0: off */
    double val_fraction; /* gpt: the end of the text held out */
    const char *ckpt_dir;
    uint64_t save_every; /* updates (0: only at the end) */
    bool resume;
    const char *metrics; /* JSONL path ("{rank}" replaced by the rank) */
    const char *plot;    /* PNG path (needs gnuplot) */
    const char *device;
    uint64_t seed;
    uint64_t print_every; /* updates between progress lines (0: automatic) */
    double dropout;      /* model dropout probability (0: none) */
} train_opts;

/* A point of the loss curves (rank 0 keeps them for the summary and plot). */
typedef struct train_point {
    uint64_t step;
    double loss, acc; /* acc < 0: none */
} train_point;

typedef struct train_job {
    train_opts o;
    vkt_dist_env env; /* what the launcher said */
    vkt_comm *comm;   /* NULL: one process */
    int rank, world;
    vkt_device *dev;
    vkt_config *cfg;
    vkt_model *model;
    vkt_engine *e;
    bool gpt;
    vkt_dataset *train, *test; /* test: the IDX test set or the held-out text */
    vkt_dataset_info ti;
    float in_mean, in_std; /* mlp: inputs standardised with the training set's */
    vkt_sampler *sampler;
    uint32_t micro;     /* this rank's micro-batch */
    uint64_t updates_per_epoch, total_updates;
    /* batch buffers for one micro-batch */
    uint64_t *idx;
    float *inputs;
    int32_t *tokens, *labels;
    float *outputs;     /* vkt_model_get_outputs */
    /* reporting */
    double t_start, t_last;
    uint64_t steps_at_start, samples_at_start, samples_at_last;
    double loss_sum;    /* this rank's micro-batch means since the last line */
    uint64_t loss_count;
    FILE *metrics;
    train_point *curve, *evals;
    uint32_t ncurve, nevals, cap_curve, cap_evals;
    double last_train_loss, last_eval_loss, last_eval_acc, bigram_loss;
} train_job;

/* train_data.c */
int train_open_data(train_job *j);
int train_create_sampler(train_job *j);
void train_close_data(train_job *j);
/* Fill this rank's next micro-batch into j's buffers; *epoch gets its epoch. */
int train_next_batch(train_job *j, vkt_batch *b, uint64_t *epoch);
/* Collective: loss (and for the MLP accuracy, in %) on the test/validation
 * set; max_batches per rank (0: all). */
int train_evaluate(train_job *j, uint32_t max_batches, double *loss, double *acc);
/* Mean cross-entropy of an add-one bigram model counted on the training
 * tokens, evaluated on the held-out ones (nats). < 0 when the vocabulary
 * is too large to count. */
double train_bigram_loss(const train_job *j);

/* train_report.c */
int train_report_open(train_job *j);
/* Collective at every update: prints a progress line on rank 0 when due. */
int train_report_update(train_job *j, uint64_t epoch, float micro_loss);
void train_report_eval(train_job *j, uint64_t epoch, double loss, double acc);
void train_report_summary(train_job *j);
void train_report_close(train_job *j);

/* "1m05s", "3h02m" */
const char *train_fmt_duration(char *buf, size_t cap, double s);

#endif
