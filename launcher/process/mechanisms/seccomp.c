/*
 * linux.seccomp.apply.v2 in the child: install the filter the launcher built (classic BPF
 * exported by libseccomp before clone3; no library code runs in the child). Last of the
 * policy ops: nothing after it but exec, which the filter allows.
 *
 * With denial evidence (notify_fd >= 0) the filter's denials notify instead of answering,
 * so it is installed with a listener (SECCOMP_FILTER_FLAG_NEW_LISTENER, and
 * WAIT_KILLABLE_RECV where the kernel has it: once the launcher has read a notification,
 * only a fatal signal interrupts the wait, so one attempt is one notification). The
 * listener is handed to the launcher over notify_fd (SCM_RIGHTS) and closed here before
 * exec: the workload never holds it (it is close-on-exec as well). If the launcher is gone
 * the kernel answers every notified call with ENOSYS: the call still never runs.
 *
 * The launcher's side of the listener is below too (bv_notify_recv / bv_notify_send): the
 * kernel's own structs, from its header, so the layout is the one the ioctls expect.
 */
#include "../child/phase.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SECCOMP_FILTER_FLAG_NEW_LISTENER
#define SECCOMP_FILTER_FLAG_NEW_LISTENER (1UL << 3)
#endif
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

/* BEGIN CFFI DECLARATIONS */
struct bv_seccomp_args {
    const void *filter;
    unsigned int len;
    int notify_fd;
};

/* One notification as the launcher sees it (no argument memory is ever read). */
struct bv_notice {
    uint64_t id;
    uint32_t pid;
    int32_t nr;
    uint32_t arch;
    uint64_t args[6];
};

int bv_notify_recv(int listener, struct bv_notice *out);
int bv_notify_send(int listener, uint64_t id, int err);
/* END CFFI DECLARATIONS */

int bv_phase_seccomp(const void *args, struct bv_ctx *ctx)
{
    const struct bv_seccomp_args *a = args;
    struct sock_fprog prog;
    long listener;
    int err;
    if (a->len == 0 || a->len > 0xffff)
        return bv_why(ctx, EINVAL, "filter of %u instructions", a->len);
    prog.len = (unsigned short)a->len;
    prog.filter = (struct sock_filter *)a->filter;
    if (a->notify_fd < 0) {
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
            return bv_why(ctx, errno, "seccomp filter");
        return 0;
    }
    listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                       SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
                       &prog);
    if (listener < 0 && errno == EINVAL) /* a kernel before 5.19: no killable wait */
        listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                           SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0)
        return bv_why(ctx, errno, "seccomp filter with a listener");
    err = bv_send_fd(a->notify_fd, (int)listener);
    if (err != 0) {
        close((int)listener);
        return bv_why(ctx, err, "hand the seccomp listener to the launcher");
    }
    close((int)listener);
    close(a->notify_fd);
    return 0;
}

int bv_notify_recv(int listener, struct bv_notice *out)
{
    struct seccomp_notif notif;
    memset(&notif, 0, sizeof notif); /* the kernel refuses a buffer that is not zeroed */
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &notif) != 0)
        return errno;
    out->id = notif.id;
    out->pid = notif.pid;
    out->nr = notif.data.nr;
    out->arch = notif.data.arch;
    for (int i = 0; i < 6; i++)
        out->args[i] = notif.data.args[i];
    return 0;
}

/* Answer notification `id` with -err. Never SECCOMP_USER_NOTIF_FLAG_CONTINUE: a notified
 * call is a denied one, and this is the only answer the launcher can give. */
int bv_notify_send(int listener, uint64_t id, int err)
{
    struct seccomp_notif_resp resp;
    if (err <= 0)
        return EINVAL;
    memset(&resp, 0, sizeof resp);
    resp.id = id;
    resp.error = -err;
    resp.val = 0;
    resp.flags = 0;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) != 0)
        return errno;
    return 0;
}
