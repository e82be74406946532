/*
 * linux.caps.drop.v1 in the child: drop every capability for good.
 *
 * After this, and across exec, the workload holds none, whoever started bvisor.
 * Securebits first (NOROOT: exec by uid 0 grants nothing; NO_SETUID_FIXUP; no ambient
 * raise; all locked) and the bounding set — both need CAP_SETPCAP, which a process that
 * has no capabilities to lose may lack: then there is nothing to drop there. Then clear
 * ambient, and set effective, permitted and inheritable to empty (always allowed).
 */
#include "../child/phase.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int bv_phase_caps_drop(const void *args, struct bv_ctx *ctx)
{
    struct { uint32_t version; int pid; } hdr = { 0x20080522 /* _V3 */, 0 };
    struct { uint32_t effective, permitted, inheritable; } data[2];
    const unsigned long secure = (1UL << 0) | (1UL << 1) | (1UL << 2) | (1UL << 3)
        | (1UL << 5) | (1UL << 6) | (1UL << 7);
    (void)args;
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0)
        return bv_why(ctx, errno, "capget");
    if ((data[0].effective >> 8) & 1) { /* CAP_SETPCAP */
        if (prctl(PR_SET_SECUREBITS, secure, 0, 0, 0) != 0)
            return bv_why(ctx, errno, "securebits");
        for (int cap = 0; cap < 64; cap++)
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
                return bv_why(ctx, errno, "drop bounding capability %d", cap);
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        return bv_why(ctx, errno, "clear ambient capabilities");
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &hdr, data) != 0)
        return bv_why(ctx, errno, "capset");
    return 0;
}
