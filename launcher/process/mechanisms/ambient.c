/*
 * linux.ambient.scrub.v2 in the child: what the workload inherits besides its policy.
 *
 *  - a session keyring of its own (the caller's is inherited across clone and exec, and a
 *    process in it possesses the caller's keys; without CONFIG_KEYS there is none: ENOSYS);
 *  - every signal disposition back to default (exec keeps SIG_IGN, and Python ignores
 *    SIGPIPE and SIGXFSZ), then an empty mask (the window started with all blocked);
 *  - a new session: no controlling terminal, so the caller's /dev/tty is out of reach and
 *    its job-control signals never arrive — unless `tty`, when the pty on stdin (the
 *    workload's own, made by the host) becomes the controlling terminal of that session;
 *  - fds: 0-2 and keep_fds survive exec, internal fds close at exec, all others close now.
 */
#include "../child/phase.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_ambient_args {
    const int *keep_fds;
    int n_keep;
    const int *internal_fds;
    int n_internal;
    int scrub_fds;
    int new_session;
    int tty;
};
/* END CFFI DECLARATIONS */

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define BV_KEYCTL_JOIN_SESSION_KEYRING 1

/* Close every fd >= 3 that is neither kept nor internal, gap by gap. */
static int ambient_scrub(const struct bv_ambient_args *a)
{
    unsigned int lo = 3;
    for (;;) {
        int next = -1;
        for (int i = 0; i < a->n_keep; i++)
            if (a->keep_fds[i] >= (int)lo && (next < 0 || a->keep_fds[i] < next))
                next = a->keep_fds[i];
        for (int i = 0; i < a->n_internal; i++)
            if (a->internal_fds[i] >= (int)lo && (next < 0 || a->internal_fds[i] < next))
                next = a->internal_fds[i];
        if (next < 0 || (unsigned int)next > lo) {
            unsigned int hi = next < 0 ? ~0U : (unsigned int)next - 1;
            if (syscall(SYS_close_range, lo, hi, 0) != 0)
                return errno;
        }
        if (next < 0)
            return 0;
        lo = (unsigned int)next + 1;
    }
}

int bv_phase_ambient(const void *args, struct bv_ctx *ctx)
{
    const struct bv_ambient_args *a = args;
    sigset_t none;
    int err;

    if (syscall(SYS_keyctl, BV_KEYCTL_JOIN_SESSION_KEYRING, NULL) < 0 && errno != ENOSYS)
        return bv_why(ctx, errno, "join a session keyring of its own");
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        (void)sigaction(sig, &sa, NULL); /* EINVAL for the libc-reserved RT signals */
    }
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        return bv_why(ctx, errno, "empty the signal mask");
    if (a->new_session && setsid() < 0)
        return bv_why(ctx, errno, "new session");
    if (a->tty && ioctl(0, TIOCSCTTY, 0) != 0)
        return bv_why(ctx, errno, "make the pty the controlling terminal");
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_SETFD, 0) != 0)
            return bv_why(ctx, errno, "keep fd %d", fd);
    for (int i = 0; i < a->n_keep; i++)
        if (fcntl(a->keep_fds[i], F_SETFD, 0) != 0)
            return bv_why(ctx, errno, "keep fd %d", a->keep_fds[i]);
    for (int i = 0; i < a->n_internal; i++)
        if (fcntl(a->internal_fds[i], F_SETFD, FD_CLOEXEC) != 0)
            return bv_why(ctx, errno, "close-on-exec fd %d", a->internal_fds[i]);
    if (a->scrub_fds && (err = ambient_scrub(a)) != 0)
        return bv_why(ctx, err, "close the other fds");
    return 0;
}
