/*
 * The child window's shared declarations: the program the launcher hands over, the
 * context every phase function gets, and the helpers they share.
 *
 * Between clone3 and exec only C runs (CPython's own _posixsubprocess does that part in C
 * for the same reason: after clone the child is a copy of a Python process, and running
 * the interpreter there is neither async-signal-safe nor auditable). The launcher turns
 * the verified lowering schedule into a *program*: one op per launcher-side mechanism, in
 * schedule order, each with the arguments its Python module prepared. window.c runs the
 * ops in that order; each mechanism's phase function lives beside its Python module
 * (launcher/process/mechanisms/<name>.c).
 *
 * The op codes below are the one definition the C side has; the Python side's table
 * (bvisor.launcher.process.program.OP_CODES) is tested to say the same.
 */
#ifndef BV_WINDOW_H
#define BV_WINDOW_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* BEGIN CFFI DECLARATIONS */
enum bv_op_code {
    BV_OP_ROOTFS = 1,
    BV_OP_INIT = 2,
    BV_OP_CAPS_DROP = 3,
    BV_OP_NO_NEW_PRIVS = 4,
    BV_OP_AMBIENT = 5,
    BV_OP_LANDLOCK = 6,
    BV_OP_SECCOMP = 7,
    BV_OP_EXEC = 8,
    BV_OP_CGROUPFS_HIDE = 9,
    BV_OP_NETPROXY = 10,
    BV_OP_USERLIMITS = 11
};

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

/* The phase functions: 0, or a positive errno with ctx->detail saying what failed. */
int bv_phase_rootfs(const void *args, struct bv_ctx *ctx);
int bv_phase_init(const void *args, struct bv_ctx *ctx);
int bv_phase_caps_drop(const void *args, struct bv_ctx *ctx);
int bv_phase_no_new_privs(const void *args, struct bv_ctx *ctx);
int bv_phase_ambient(const void *args, struct bv_ctx *ctx);
int bv_phase_landlock(const void *args, struct bv_ctx *ctx);
int bv_phase_seccomp(const void *args, struct bv_ctx *ctx);
int bv_phase_exec(const void *args, struct bv_ctx *ctx);
int bv_phase_cgroupfs_hide(const void *args, struct bv_ctx *ctx);
int bv_phase_userlimits(const void *args, struct bv_ctx *ctx);
int bv_phase_netproxy(const void *args, struct bv_ctx *ctx);

#endif
