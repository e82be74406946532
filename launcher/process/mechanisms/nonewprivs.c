/*
 * linux.nonewprivs.v1 in the child: no exec can ever grant privileges again (setuid bits,
 * file capabilities). It precedes Landlock: landlock_restrict_self() requires it of a
 * caller without CAP_SYS_ADMIN, and seccomp likewise.
 */
#include "../child/phase.h"

#include <errno.h>
#include <sys/prctl.h>

int bv_phase_no_new_privs(const void *args, struct bv_ctx *ctx)
{
    (void)args;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return bv_why(ctx, errno, "no_new_privs");
    return 0;
}
