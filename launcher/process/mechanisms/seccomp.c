/*
 * linux.seccomp.apply.v2 in the child: install the filter the launcher built (classic BPF
 * exported by libseccomp before clone3; no library code runs in the child). Last of the
 * policy ops: nothing after it but exec, which the filter allows.
 */
#include "../child/window.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_seccomp_args {
    const void *filter;
    unsigned int len;
};
/* END CFFI DECLARATIONS */

int bv_phase_seccomp(const void *args, struct bv_ctx *ctx)
{
    const struct bv_seccomp_args *a = args;
    struct sock_fprog prog;
    if (a->len == 0 || a->len > 0xffff)
        return bv_why(ctx, EINVAL, "filter of %u instructions", a->len);
    prog.len = (unsigned short)a->len;
    prog.filter = (struct sock_filter *)a->filter;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        return bv_why(ctx, errno, "seccomp filter");
    return 0;
}
