/* vktrain selftest: real kernels on a device, checked against C. */
#include <getopt.h>

#include "cli/cli.h"

static int usage(FILE *f, int code)
{
    fprintf(f, "usage: vktrain selftest [--device SEL]\n\n"
               "Runs axpy and a sum reduction over 1 Mi floats on the device and compares\n"
               "them with C, then times an empty dispatch. Exit code 0 when all results are\n"
               "within tolerance.\n\n"
               "  --device SEL   index, UUID or part of the name (see 'vktrain info')\n");
    return code;
}

int cmd_selftest(int argc, char **argv)
{
    static const struct option opts[] = {{"device", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *sel = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        if (c == 'd') sel = optarg;
        else if (c == 'h') return usage(stdout, 0);
        else return usage(stderr, 2);
    }
    if (optind < argc)
        return cli_usage_error("selftest", "unexpected argument '%s'", argv[optind]);
    vkt_device *dev;
    if (cli_open_device(sel, &dev)) return 1;
    const vkt_device_caps *caps = vkt_device_get_caps(dev);
    printf("selftest on [%u] %s (%s), host %s\n", caps->index, caps->name, caps->driver_info,
           cli_host_isa());
    vkt_selftest_result r;
    vkt_status st = vkt_device_selftest(dev, &r);
    int rc = 0;
    if (r.completed) {
        printf("  axpy (1 Mi floats)      max abs error %.3g   %s\n", r.axpy_max_abs_err,
               r.axpy_max_abs_err <= 1e-5 ? "ok" : "FAIL");
        printf("  sum reduction (1 Mi)    relative error %.3g  %s\n", r.sum_rel_err,
               r.sum_rel_err <= 1e-5 ? "ok" : "FAIL");
        printf("  empty dispatch          %.1f us submit+wait (median of 51)\n", r.dispatch_us);
        printf("  validation messages     %llu\n", (unsigned long long)r.validation_messages);
    }
    if (st != VKT_OK) rc = cli_fail(st, "selftest");
    else printf("selftest passed\n");
    vkt_device_destroy(dev);
    return rc;
}
