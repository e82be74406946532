/*
 * linux.pidns.init.v1 in the child: the PID namespace's init.
 *
 * The child of clone3(CLONE_NEWPID) is pid 1 of the new namespace. Once the root is built
 * (the ops before this one run as pid 1, so /proc can be mounted for this namespace), it
 * forks: the child goes on with the program and becomes the workload (pid 2); pid 1 stays
 * behind as a small init and never runs anything else. Init:
 *
 *  - leaves the caller's session (setsid), closes every fd but its two channels, and
 *    blanks the argument area it inherited from the launcher (its interpreter's path on
 *    the host and the launcher's arguments), which /proc/1/cmdline shows to every process
 *    of the namespace;
 *  - takes signals with sigwaitinfo (all stay blocked): a stop signal (TERM, INT, HUP,
 *    QUIT) is forwarded to the workload, SIGCHLD reaps every orphan; a process that made
 *    init its tracer (PTRACE_TRACEME) is let go at its first stop, so only an exit or a
 *    fatal signal ends the workload (a stop was once reported as an exit code);
 *  - when the workload exits: kills every other process of the namespace, reaps them,
 *    writes 'W' and the workload's raw wait status to init_fd, then waits on release_fd
 *    (a byte or EOF from the launcher, which may still read the run's files) and exits.
 *
 * Init exiting ends the namespace: the kernel kills whatever is left. So killing init —
 * as the launcher's death does through the parent-death signal — is the atomic kill of
 * the whole run tree, with no cgroup needed. A workload cannot signal or trace init: it is
 * outside the workload's Landlock domain (signal scope, ptrace) and keeps its capabilities
 * in the namespace, which the workload has dropped.
 */
#include "../child/phase.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
struct bv_init_args {
    int init_fd;
    int release_fd;
};
/* END CFFI DECLARATIONS */

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static void init_close_others(int keep_a, int keep_b)
{
    int lo = keep_a < keep_b ? keep_a : keep_b;
    int hi = keep_a < keep_b ? keep_b : keep_a;
    syscall(SYS_close_range, 0, (unsigned)lo - 1, 0);
    if (hi > lo + 1)
        syscall(SYS_close_range, (unsigned)lo + 1, (unsigned)hi - 1, 0);
    syscall(SYS_close_range, (unsigned)hi + 1, ~0U, 0);
}

/* Fields 48 and 49 of /proc/self/stat (arg_start, arg_end), or 0 when unreadable. */
static int init_arg_area(unsigned long *start, unsigned long *end)
{
    char line[1024];
    ssize_t got;
    int field = 2;
    char *at;
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    got = read(fd, line, sizeof line - 1);
    close(fd);
    if (got <= 0)
        return 0;
    line[got] = '\0';
    at = strrchr(line, ')'); /* the name before it may hold spaces */
    if (at == NULL)
        return 0;
    while (*at != '\0' && field < 48) {
        if (*at++ == ' ')
            field++;
    }
    *start = strtoul(at, &at, 10);
    if (*at != ' ')
        return 0;
    *end = strtoul(at + 1, NULL, 10);
    return *end > *start;
}

static void init_forget_arguments(void)
{
    static const char name[] = "bvisor-init";
    unsigned long start, end;
    if (!init_arg_area(&start, &end))
        return; /* no /proc of this namespace: nothing shows the area either */
    memset((void *)start, 0, end - start);
    memcpy((void *)start, name, end - start < sizeof name ? end - start - 1 : sizeof name);
}

static void __attribute__((noreturn)) init_loop(const struct bv_init_args *a, pid_t workload)
{
    sigset_t set;
    int status = 0, done = 0;
    unsigned char record[5];
    int32_t raw = 0;
    char release;

    (void)setsid();
    (void)prctl(PR_SET_NAME, "bvisor-init", 0, 0, 0);
    init_forget_arguments();
    init_close_others(a->init_fd, a->release_fd);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    while (!done) {
        siginfo_t info;
        pid_t pid;
        if (sigwaitinfo(&set, &info) < 0)
            continue;
        if (info.si_signo != SIGCHLD) {
            (void)kill(workload, info.si_signo);
            continue;
        }
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (WIFSTOPPED(status)) {
                /* A tracee's stop: a process of the tree made init its tracer
                 * (PTRACE_TRACEME). Init traces nothing: it lets go, delivering the
                 * stopping signal as if untraced (not the SIGTRAP that ptrace itself
                 * raised at an exec), and a stop is never taken for an exit. */
                int sig = WSTOPSIG(status);
                (void)ptrace(PTRACE_DETACH, pid, NULL, (void *)(long)(sig == SIGTRAP ? 0 : sig));
                continue;
            }
            if (pid == workload && (WIFEXITED(status) || WIFSIGNALED(status))) {
                done = 1;
                raw = status;
            }
        }
    }
    /* The workload is gone: so is the rest of its tree. */
    (void)kill(-1, SIGKILL);
    while (waitpid(-1, &status, 0) > 0 || errno == EINTR)
        ;
    record[0] = 'W';
    memcpy(record + 1, &raw, sizeof raw);
    bv_write_all(a->init_fd, record, sizeof record);
    while (read(a->release_fd, &release, 1) < 0 && errno == EINTR)
        ;
    _exit(0);
}

int bv_phase_init(const void *args_, struct bv_ctx *ctx)
{
    const struct bv_init_args *a = args_;
    pid_t pid;
    if (getpid() != 1)
        return bv_why(ctx, EINVAL, "init op outside a new PID namespace (pid %d)", (int)getpid());
    pid = fork();
    if (pid < 0)
        return bv_why(ctx, errno, "fork the workload");
    if (pid > 0) {
        close(ctx->req->status_fd); /* from here the workload reports; EOF marks its exec */
        init_loop(a, pid);
    }
    close(a->init_fd);
    close(a->release_fd);
    return 0;
}
