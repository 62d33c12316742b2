/* st_compare: do two safetensors files hold the same tensors, within a
 * tolerance? For the example tests: vktrain's final weights against
 * PyTorch's, through the public tensors API (so the tests need no Python).
 *
 *   st_compare EXPECTED GOT TOL
 *
 * Every tensor of EXPECTED must be in GOT with the same shape; the largest
 * |expected - got| over all elements must be at most TOL x max |expected|
 * (a relative bound that does not care which weight is large). Prints both
 * numbers; exit 0 when within, 1 when not, 2 on a bad file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vktrain/vktrain.h>

static int bad(const char *what)
{
    fprintf(stderr, "st_compare: %s: %s\n", what, vkt_last_error());
    return 2;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: st_compare EXPECTED GOT TOL\n");
        return 2;
    }
    double tol = atof(argv[3]), wmax = 0, dmax = 0;
    const char *worst = "-";
    vkt_tensor_file *e = NULL, *g = NULL;
    if (vkt_tensor_file_open(argv[1], &e) != VKT_OK) return bad("EXPECTED");
    if (vkt_tensor_file_open(argv[2], &g) != VKT_OK) return bad("GOT");
    int rc = 2;
    for (uint32_t i = 0; i < vkt_tensor_file_count(e); i++) {
        vkt_tensor_info te, tg;
        vkt_tensor_file_info(e, i, &te);
        if (vkt_tensor_file_find(g, te.name, &tg) != VKT_OK) {
            bad("GOT");
            goto out;
        }
        if (tg.ndim != te.ndim || memcmp(tg.shape, te.shape, sizeof te.shape)) {
            fprintf(stderr, "st_compare: '%s': shapes differ\n", te.name);
            goto out;
        }
        float *a = malloc(te.numel * sizeof *a), *b = malloc(te.numel * sizeof *b);
        int nan_seen = 0;
        int ok = a && b && vkt_tensor_file_read_f32(e, te.name, a, te.numel) == VKT_OK &&
                 vkt_tensor_file_read_f32(g, te.name, b, te.numel) == VKT_OK;
        for (uint64_t k = 0; ok && k < te.numel; k++) {
            double d = fabs((double)a[k] - (double)b[k]);
            if (isnan(d)) { /* a NaN anywhere fails, whatever comes after it */
                fprintf(stderr, "st_compare: '%s'[%llu] is NaN in one file\n", te.name,
                        (unsigned long long)k);
                ok = 0;
                nan_seen = 1;
                break;
            }
            if (d > dmax) dmax = d, worst = te.name;
            wmax = fmax(wmax, fabs((double)a[k]));
        }
        free(a);
        free(b);
        if (!ok) {
            if (!nan_seen) bad(te.name);
            goto out;
        }
    }
    printf("st_compare: max |expected - got| = %.3g (in %s) = %.3g x max |expected| = %.4g; "
           "tolerance %.3g x\n", dmax, worst, wmax > 0 ? dmax / wmax : dmax, wmax, tol);
    rc = dmax <= tol * wmax ? 0 : 1;
out:
    vkt_tensor_file_close(e);
    vkt_tensor_file_close(g);
    return rc;
}
