/* vktrain launch across hosts: DeepSpeed-style hostfiles, --include and
 * --exclude, and the ssh command that starts a remote rank. Plain libc, no
 * library calls, so the unit tests compile launch_hosts.c on its own. */
#ifndef VKT_CLI_LAUNCH_HOSTS_H
#define VKT_CLI_LAUNCH_HOSTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LAUNCH_MAX_HOSTS 256
#define LAUNCH_MAX_SLOTS 64 /* per host: one bit each in launch_host.use */
#define LAUNCH_HOST_MAX 256

typedef struct launch_host {
    char name[LAUNCH_HOST_MAX];
    int slots;    /* "slots=N" of the hostfile */
    uint64_t use; /* bit s: slot s runs a rank (all slots until filtered) */
} launch_host;

/* Parse hostfile text (DeepSpeed's format): one "HOST slots=N" per line,
 * '#' starts a comment, blank lines are skipped, a host may appear once;
 * more KEY=VALUE words on a line (Open MPI's max_slots=N) are ignored.
 * file names the text in messages. Returns the number of hosts, or -1 with
 * "FILE:LINE: what is wrong" in err. */
int launch_hostfile_parse(const char *file, const char *text, launch_host *hosts, int cap,
                          char *err, size_t errcap);
/* Read and parse the file at path; as launch_hostfile_parse. */
int launch_hostfile_read(const char *path, launch_host *hosts, int cap, char *err,
                         size_t errcap);

/* Apply DeepSpeed's --include or --exclude filter ("host1:0,1@host2": hosts
 * separated by '@', optional ":slot,slot" after a host; a host without slots
 * means all of its slots). include keeps only what it names, exclude drops
 * what it names; both at once is an error, as are unknown hosts and slots
 * outside 0..slots-1. Hosts left without slots are removed, the order of the
 * hostfile is kept. Returns the number of hosts left (0 is an error too), or
 * -1 with a message in err. */
int launch_hosts_filter(launch_host *hosts, int n, const char *include, const char *exclude,
                        char *err, size_t errcap);

/* One rank of a job over hosts. */
typedef struct launch_rank {
    int host;                     /* index into the hosts */
    int local_rank, local_world;  /* among the ranks on that host */
    int slot;                     /* the host's slot it runs in */
} launch_rank;

/* Ranks host by host, in slot order. Returns the world size, or -1 when it
 * would exceed cap. */
int launch_layout(const launch_host *hosts, int n, launch_rank *ranks, int cap);

/* `str` quoted for a POSIX shell: '...' with each ' as '\''. Returns the
 * length it needs (without the NUL), writing at most cap bytes. */
size_t launch_shell_quote(const char *str, char *out, size_t cap);

/* What a remote rank gets in its environment. */
typedef struct launch_remote {
    int rank, world, local_rank, local_world, master_port;
    const char *master_addr;
    const char *device;      /* VKT_DEVICE, or NULL */
    const char *lp_threads;  /* LP_NUM_THREADS, or NULL: cores / local_world there */
    const char *cwd;         /* directory to run in */
    char *const *forward;    /* "NAME=VALUE" entries exported as well; NULL-ended */
} launch_remote;

/* The command line the remote login shell (POSIX sh) runs for one rank:
 * cd, export the variables, read VKT_JOB_SECRET from stdin, run argv with
 * a watchdog that stops it when stdin closes (the ssh connection ended).
 * Returns a malloc'd string (the caller frees it), NULL when out of memory. */
char *launch_remote_command(const launch_remote *r, char *const *argv);

/* ssh's argument vector for host: ssh -T -x -o BatchMode=yes -o
 * LogLevel=ERROR [-p port] OPTS... host command. opts is split at white
 * space (no quoting). Returns a malloc'd NULL-ended vector whose strings
 * point into itself or into the arguments, NULL when out of memory or when
 * there are too many options. */
char **launch_ssh_argv(const char *host, int port, const char *opts, const char *command);

#endif
