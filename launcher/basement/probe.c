/*
 * The namespace probe, in C: what a child of this process can create, asked of the kernel
 * by trying it in a throwaway child (no interpreter is started for it).
 *
 * bv_probe_namespaces() forks; the child tries, in order: a user namespace (unless
 * `as_root`), a UTS namespace inside it whose hostname it can set (sethostname there, as
 * the child window does; the caller's own names are never touched: a failed unshare
 * stops the step before it), a network namespace (and there: the loopback brought up and
 * a TCP socket listening on 127.0.0.1, as the allow list's proxy listener is made), then
 * a mount and a PID namespace, and in a
 * grandchild (pid 1 of the new namespace) the mounts a private root needs: a tmpfs and a
 * fresh procfs, through the same fsopen/fsmount calls the child window uses. The answer is
 * a bit set (BV_PROBE_*); a failing step's errno is stored in *err_out with its step.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* BEGIN CFFI DECLARATIONS */
int bv_probe_namespaces(int as_root, int *step_out, int *err_out);
/* END CFFI DECLARATIONS */

#define BV_PROBE_USERNS 1
#define BV_PROBE_NETNS 2
#define BV_PROBE_PRIVATE_ROOT 4
#define BV_PROBE_NET_LOOPBACK 8
#define BV_PROBE_UTSNS 16

#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif

/* Make (and drop) a detached mount of `type`: 0 or the errno. */
static int probe_fs(const char *type)
{
    int fs = (int)syscall(SYS_fsopen, type, 1);
    int mnt;
    if (fs < 0)
        return errno;
    if (syscall(SYS_fsconfig, fs, 6 /* CMD_CREATE */, NULL, NULL, 0) != 0) {
        int err = errno;
        close(fs);
        return err;
    }
    mnt = (int)syscall(SYS_fsmount, fs, 1, 0);
    close(fs);
    if (mnt < 0)
        return errno;
    close(mnt);
    return 0;
}

/* In the (new) network namespace: loopback up, a TCP socket listening on 127.0.0.1. */
static int probe_loopback(void)
{
    struct ifreq ifr;
    struct sockaddr_in addr;
    int ctl, lsn, ok = 0;
    ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (ctl < 0)
        return 0;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (ioctl(ctl, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(ctl, SIOCSIFFLAGS, &ifr) == 0) {
            lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            memset(&addr, 0, sizeof addr);
            addr.sin_family = AF_INET;
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (lsn >= 0 && bind(lsn, (struct sockaddr *)&addr, sizeof addr) == 0 &&
                listen(lsn, 1) == 0)
                ok = 1;
            if (lsn >= 0)
                close(lsn);
        }
    }
    close(ctl);
    return ok;
}

static void probe_report(int fd, int bits, int step, int err)
{
    int record[3] = {bits, step, err};
    ssize_t n = write(fd, record, sizeof record);
    (void)n;
}

static void __attribute__((noreturn)) probe_child(int as_root, int fd)
{
    int bits = 0;
    pid_t pid;
    int status, err;
    if (!as_root) {
        if (unshare(CLONE_NEWUSER) != 0) {
            probe_report(fd, bits, 1, errno);
            _exit(0);
        }
        bits |= BV_PROBE_USERNS;
    }
    if (unshare(CLONE_NEWUTS) == 0 && sethostname("bvisor-probe", 12) == 0)
        bits |= BV_PROBE_UTSNS;
    if (unshare(CLONE_NEWNET) == 0) {
        bits |= BV_PROBE_NETNS;
        if (probe_loopback())
            bits |= BV_PROBE_NET_LOOPBACK;
    }
    if (unshare(CLONE_NEWNS | CLONE_NEWPID) != 0) {
        probe_report(fd, bits, 2, errno);
        _exit(0);
    }
    pid = fork();
    if (pid < 0) {
        probe_report(fd, bits, 3, errno);
        _exit(0);
    }
    if (pid == 0) {
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
            _exit(64 + 4);
        if ((err = probe_fs("tmpfs")) != 0)
            _exit(64 + 5);
        if ((err = probe_fs("proc")) != 0)
            _exit(64 + 6); /* the grandchild's step, reported by its exit status */
        _exit(0);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
        probe_report(fd, bits, 3, ECHILD);
        _exit(0);
    }
    if (WEXITSTATUS(status) == 0)
        bits |= BV_PROBE_PRIVATE_ROOT;
    probe_report(fd, bits, WEXITSTATUS(status) == 0 ? 0 : WEXITSTATUS(status) - 64, 0);
    _exit(0);
}

int bv_probe_namespaces(int as_root, int *step_out, int *err_out)
{
    int fds[2], record[3] = {0, 0, 0}, status;
    pid_t pid;
    ssize_t n;
    if (pipe2(fds, 02000000 /* O_CLOEXEC */) != 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        int err = errno;
        close(fds[0]);
        close(fds[1]);
        return -err;
    }
    if (pid == 0) {
        close(fds[0]);
        probe_child(as_root, fds[1]);
    }
    close(fds[1]);
    do {
        n = read(fds[0], record, sizeof record);
    } while (n < 0 && errno == EINTR);
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof record)
        return -EPROTO;
    *step_out = record[1];
    *err_out = record[2];
    return record[0];
}
