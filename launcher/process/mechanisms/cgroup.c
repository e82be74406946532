/*
 * linux.cgroup.leaf.v1 in the child, when the workload has no private root: hide the
 * cgroup filesystems. The workload must not be able to rewrite its run's limits or move
 * itself out of its leaf, which file ownership alone would allow a uid-0 workload. In a
 * mount namespace of its own, with propagation private first (nothing reaches the host),
 * an empty read-only tmpfs goes over each cgroup mount; after the capability drop the
 * workload cannot take it off again. (A private root never mounts a cgroupfs at all.)
 */
#include "../child/phase.h"

#include <errno.h>
#include <sys/mount.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_hide_args {
    const char *const *paths;
    int n_paths;
};
/* END CFFI DECLARATIONS */

int bv_phase_cgroupfs_hide(const void *args, struct bv_ctx *ctx)
{
    const struct bv_hide_args *a = args;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        return bv_why(ctx, errno, "make mounts private");
    for (int i = 0; i < a->n_paths; i++)
        if (mount("tmpfs", a->paths[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "size=4k,mode=0555") != 0)
            return bv_why(ctx, errno, "cover %s", a->paths[i]);
    return 0;
}
