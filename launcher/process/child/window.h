/*
 * The child window's dispatch table: the op codes and the phase function each names.
 * (The program, the context and the shared helpers are phase.h's.)
 *
 * Between clone3 and exec only C runs (CPython's own _posixsubprocess does that part in C
 * for the same reason: after clone the child is a copy of a Python process, and running
 * the interpreter there is neither async-signal-safe nor auditable). The launcher turns
 * the verified lowering schedule into a *program*: one op per launcher-side mechanism, in
 * schedule order, each with the arguments its Python module prepared. window.c runs the
 * ops in that order; each mechanism's phase function lives beside its Python module
 * (launcher/process/mechanisms/<name>.c).
 *
 * The op codes below are the one definition the C side has; the Python side's table
 * (bvisor.launcher.process.program.OP_CODES) is tested to say the same.
 */
#ifndef BV_WINDOW_H
#define BV_WINDOW_H

#include "phase.h"

/* BEGIN CFFI DECLARATIONS */
enum bv_op_code {
    BV_OP_ROOTFS = 1,
    BV_OP_INIT = 2,
    BV_OP_CAPS_DROP = 3,
    BV_OP_NO_NEW_PRIVS = 4,
    BV_OP_AMBIENT = 5,
    BV_OP_LANDLOCK = 6,
    BV_OP_SECCOMP = 7,
    BV_OP_EXEC = 8,
    BV_OP_CGROUPFS_HIDE = 9,
    BV_OP_NETPROXY = 10,
    BV_OP_USERLIMITS = 11,
    BV_OP_NETDNS = 12,
    BV_OP_UTSNS = 13
};

/* END CFFI DECLARATIONS */

/* The phase functions: 0, or a positive errno with ctx->detail saying what failed. */
int bv_phase_rootfs(const void *args, struct bv_ctx *ctx);
int bv_phase_init(const void *args, struct bv_ctx *ctx);
int bv_phase_caps_drop(const void *args, struct bv_ctx *ctx);
int bv_phase_no_new_privs(const void *args, struct bv_ctx *ctx);
int bv_phase_ambient(const void *args, struct bv_ctx *ctx);
int bv_phase_landlock(const void *args, struct bv_ctx *ctx);
int bv_phase_seccomp(const void *args, struct bv_ctx *ctx);
int bv_phase_exec(const void *args, struct bv_ctx *ctx);
int bv_phase_cgroupfs_hide(const void *args, struct bv_ctx *ctx);
int bv_phase_userlimits(const void *args, struct bv_ctx *ctx);
int bv_phase_netproxy(const void *args, struct bv_ctx *ctx);
int bv_phase_netdns(const void *args, struct bv_ctx *ctx);
int bv_phase_utsns(const void *args, struct bv_ctx *ctx);

#endif
