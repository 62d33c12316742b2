/* Internal pieces of dist_env.c that the tests reach: the SLURM hostlist
 * parser. Not installed. */
#ifndef VKT_DIST_ENV_H
#define VKT_DIST_ENV_H

#include <stddef.h>

#include "vktrain/status.h"

/* The first host of a SLURM hostlist ("node[01-03,07],gpu5" → "node01",
 * "rack[1-2]-n[3-4]" → "rack1-n3") into out (cap bytes). The whole list is
 * checked: unbalanced or empty brackets, ranges that are not digits or run
 * backwards, and empty entries are VKT_ERR_INVALID_ARG naming what (the
 * variable name, for messages) and the text. */
vkt_status vkt__hostlist_first(const char *what, const char *list, char *out, size_t cap);

/* Tasks on node `node` from SLURM's "2(x3),1" form (SLURM_STEP_TASKS_PER_NODE):
 * 2 for nodes 0..2, 1 for node 3. VKT_ERR_INVALID_ARG when malformed or the
 * node is past the end. */
vkt_status vkt__slurm_tasks_on_node(const char *what, const char *spec, int node, int *out);

#endif
