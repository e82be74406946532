/*
 * The child window's core: create the child with clone3, wait for the launcher's go, run
 * the program (the verified schedule's ops, in order), report each op on the status pipe.
 *
 * Status protocol (req->status_fd, close-on-exec): once the child has joined its cgroup
 * v1 leaves (only when it has any), 'J'; after op i succeeds, 'O' and i (u16, native
 * order); just before exec, 'R'; on failure, 'E', i (u16), errno (i32), a length byte and
 * that many bytes of detail, then _exit(127). EOF after 'R' with no record means execveat
 * succeeded (the pipe closed at exec). Index 0xffff is the window's own set-up (the
 * parent-death signal, the cgroup join, the rendezvous).
 *
 * The child joins its v1 leaves itself, by writing "0" (the calling thread) to each
 * leaf's `tasks` file the launcher opened: the kernel moves the current single thread
 * without taking its global threadgroup lock, whose write side waits for an RCU grace
 * period (5-14 ms here), as the launcher writing the child's pid to cgroup.procs did. The
 * child is one thread (clone3 copies only the caller), so the thread is the process; the
 * launcher confirms it in each leaf's cgroup.procs before it writes 'G'.
 *
 * The child starts with every signal blocked (bv_spawn blocks them across clone3 so no
 * Python handler can run in the copy); the ambient op empties the mask just before the
 * policy ops, and the PID namespace's init keeps them blocked and takes them with
 * sigwaitinfo.
 */
#include "window.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

/* BEGIN CFFI DECLARATIONS */
int bv_spawn(const struct bv_spawn_req *req, int *pid_out);
long long bv_fstatfs_type(int fd);
/* END CFFI DECLARATIONS */

#define BV_SETUP_INDEX 0xffff

/* The kernel's struct clone_args (v2, with the cgroup field: 88 bytes). */
struct bv_clone_args {
    uint64_t flags;
    uint64_t pidfd;
    uint64_t child_tid;
    uint64_t parent_tid;
    uint64_t exit_signal;
    uint64_t stack;
    uint64_t stack_size;
    uint64_t tls;
    uint64_t set_tid;
    uint64_t set_tid_size;
    uint64_t cgroup;
};

static void bv_mark(const struct bv_ctx *ctx, char kind, int index)
{
    unsigned char record[3];
    uint16_t i = (uint16_t)index;
    record[0] = (unsigned char)kind;
    memcpy(record + 1, &i, sizeof i);
    bv_write_all(ctx->req->status_fd, record, kind == 'R' || kind == 'J' ? 1 : sizeof record);
}

static void __attribute__((noreturn)) bv_fail(const struct bv_ctx *ctx, int index, int err)
{
    unsigned char record[8 + sizeof ctx->detail];
    uint16_t i = (uint16_t)index;
    int32_t e = err;
    size_t len = strnlen(ctx->detail, sizeof ctx->detail - 1);
    record[0] = 'E';
    memcpy(record + 1, &i, sizeof i);
    memcpy(record + 3, &e, sizeof e);
    record[7] = (unsigned char)len;
    memcpy(record + 8, ctx->detail, len);
    bv_write_all(ctx->req->status_fd, record, 8 + len);
    _exit(127);
}

static int bv_run_op(const struct bv_op *op, struct bv_ctx *ctx)
{
    switch (op->code) {
    case BV_OP_ROOTFS:
        return bv_phase_rootfs(op->args, ctx);
    case BV_OP_INIT:
        return bv_phase_init(op->args, ctx);
    case BV_OP_CAPS_DROP:
        return bv_phase_caps_drop(op->args, ctx);
    case BV_OP_NO_NEW_PRIVS:
        return bv_phase_no_new_privs(op->args, ctx);
    case BV_OP_AMBIENT:
        return bv_phase_ambient(op->args, ctx);
    case BV_OP_LANDLOCK:
        return bv_phase_landlock(op->args, ctx);
    case BV_OP_SECCOMP:
        return bv_phase_seccomp(op->args, ctx);
    case BV_OP_CGROUPFS_HIDE:
        return bv_phase_cgroupfs_hide(op->args, ctx);
    case BV_OP_NETPROXY:
        return bv_phase_netproxy(op->args, ctx);
    case BV_OP_USERLIMITS:
        return bv_phase_userlimits(op->args, ctx);
    case BV_OP_NETDNS:
        return bv_phase_netdns(op->args, ctx);
    case BV_OP_UTSNS:
        return bv_phase_utsns(op->args, ctx);
    case BV_OP_EXEC:
        bv_mark(ctx, 'R', 0);
        return bv_phase_exec(op->args, ctx);
    default:
        return bv_why(ctx, EINVAL, "unknown op code %d", op->code);
    }
}

/* Join each cgroup v1 leaf (see the top of this file), then say so with 'J'. */
static void bv_join_cgroups(struct bv_ctx *ctx)
{
    const struct bv_spawn_req *req = ctx->req;
    for (int i = 0; i < req->n_join_fds; i++) {
        ssize_t n;
        do {
            n = write(req->join_fds[i], "0", 1);
        } while (n < 0 && errno == EINTR);
        if (n != 1)
            bv_fail(ctx, BV_SETUP_INDEX,
                    bv_why(ctx, n < 0 ? errno : EIO, "join cgroup v1 leaf %d", i));
        close(req->join_fds[i]);
    }
    if (req->n_join_fds > 0)
        bv_mark(ctx, 'J', 0);
}

static void __attribute__((noreturn)) bv_child(const struct bv_spawn_req *req)
{
    struct bv_ctx ctx;
    char go = 0;
    ssize_t n;

    memset(&ctx, 0, sizeof ctx);
    ctx.req = req;
    /* Die with the launcher; if it already died, do not run unsupervised: then the
     * rendezvous below reads EOF (the child holds no write end of its own). In a new PID
     * namespace getppid() is 0, so the parent check only applies outside one. */
    close(req->sync_write_fd);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        bv_fail(&ctx, BV_SETUP_INDEX, bv_why(&ctx, errno, "parent-death signal"));
    if (getpid() != 1 && getppid() != req->parent_pid)
        _exit(127);
    bv_join_cgroups(&ctx);
    /* Rendezvous: the launcher writes the id maps and OOM score, confirms the cgroup
     * join, then writes 'G'. EOF means it gave up: exit without running anything. */
    do {
        n = read(req->sync_fd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1 || go != 'G')
        _exit(127);
    close(req->sync_fd);

    for (int i = 0; i < req->n_ops; i++) {
        int err = bv_run_op(&req->ops[i], &ctx);
        if (err != 0)
            bv_fail(&ctx, i, err);
        bv_mark(&ctx, 'O', i);
    }
    /* The last op is exec, which returns only on failure. */
    bv_fail(&ctx, req->n_ops, bv_why(&ctx, ENOEXEC, "the program has no exec op"));
}

/* Create the child. Returns 0 and the host-visible pid, or a positive errno. All signals
 * are blocked across clone3 so no Python-level handler can run in the child. */
int bv_spawn(const struct bv_spawn_req *req, int *pid_out)
{
    struct bv_clone_args args;
    sigset_t all, old;
    long pid;
    int saved;

    memset(&args, 0, sizeof args);
    args.flags = req->clone_flags;
    args.exit_signal = SIGCHLD;
    if (req->clone_flags & CLONE_INTO_CGROUP)
        args.cgroup = (uint64_t)req->cgroup_fd;

    sigfillset(&all);
    if (sigprocmask(SIG_SETMASK, &all, &old) != 0)
        return errno;
    pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0)
        bv_child(req);
    saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0)
        return saved;
    *pid_out = (int)pid;
    return 0;
}

/* statfs f_type of an fd (cgroup v1 vs v2 vs anything else), or -errno. */
long long bv_fstatfs_type(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) != 0)
        return -(long long)errno;
    return (long long)st.f_type;
}
