/*
 * What every phase function of the child window gets and may use: the program the
 * launcher hands over (its ops and their order), the context each phase is called with,
 * and the two helpers they share. The core (window.c) and every mechanism's phase
 * (launcher/process/mechanisms/<name>.c) include this; only the core includes window.h,
 * which names the phases it dispatches to — so the phases depend on this file and never
 * on the core that calls them.
 */
#ifndef BV_PHASE_H
#define BV_PHASE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_op {
    int code;
    const void *args;
};

struct bv_spawn_req {
    uint64_t clone_flags;
    int cgroup_fd;
    int sync_fd;
    int sync_write_fd;
    int status_fd;
    int parent_pid;
    const struct bv_op *ops;
    int n_ops;
    const int *join_fds; /* cgroup v1 `tasks` files the child joins before the rendezvous */
    int n_join_fds;
};
/* END CFFI DECLARATIONS */

/* What every phase function gets: the request, and room for a one-line detail that the
 * failure record carries back (which path, which step). */
struct bv_ctx {
    const struct bv_spawn_req *req;
    char detail[160];
};

/* Set ctx->detail (printf-style, truncated) and return err: `return bv_why(ctx, e, ...)`. */
int bv_why(struct bv_ctx *ctx, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Write every byte (retrying on EINTR); errors are ignored: the reader sees EOF. */
void bv_write_all(int fd, const void *buf, size_t len);

/* Send `fd` over the unix socket `sock` (SCM_RIGHTS, one 'L' byte): 0, or a positive errno
 * (EPIPE when nothing was sent). The caller keeps its copy and closes it. */
int bv_send_fd(int sock, int fd);

#endif
