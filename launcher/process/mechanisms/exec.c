/*
 * linux.exec.v1 in the child: execute the workload with exactly the planned argv and
 * environment. Returns only on failure.
 *
 * The file executed is always the one the host opened (exe_fd). In a private root the
 * same file is usually visible at its path too (inside a bound root); then that view of
 * it is executed — after checking it is the very inode of exe_fd — so the workload's
 * /proc/self/exe names a path in its own root (programs such as Python find their files
 * through it). Otherwise exe_fd itself is executed.
 */
#include "../child/phase.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_exec_args {
    int exe_fd;
    const char *inside_path;
    char *const *argv;
    char *const *envp;
};
/* END CFFI DECLARATIONS */

#ifndef SYS_execveat
#define SYS_execveat 322
#endif
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

static int exec_same_file(int a, int b)
{
    struct stat sa, sb;
    if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0)
        return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int bv_phase_exec(const void *args, struct bv_ctx *ctx)
{
    const struct bv_exec_args *a = args;
    int fd = a->exe_fd;
    if (a->inside_path != NULL) {
        int inside = open(a->inside_path, O_PATH | O_CLOEXEC);
        if (inside >= 0 && exec_same_file(inside, a->exe_fd))
            fd = inside;
        else if (inside >= 0)
            close(inside);
    }
    syscall(SYS_execveat, fd, "", a->argv, a->envp, AT_EMPTY_PATH);
    return bv_why(ctx, errno, "execveat");
}
