"""``bvisor serve``: a per-user service that runs ``bvisor run`` commands already warm.

A ``bvisor run`` command pays, before any kernel work, for an interpreter with bvisor's
imports, a probe and a launcher started for the run. The service pays that once: it
imports everything, probes, and keeps a resident launcher; each ``bvisor run`` that finds
it hands over its whole context — arguments, environment, working directory, umask and
every open fd — and the service forks a copy of itself that *becomes* that command (same
fds at the same numbers, same directory, same environment) and runs exactly the code the
command would have run, recording to the ledger the command names. The command waits,
forwards the signals it receives, and exits with the copy's status.

Who may use it (checked by both sides, before anything runs):

* only the user who started it: the socket lives in a directory only that user can enter
  (``$XDG_RUNTIME_DIR/bvisor`` or ``~/.cache/bvisor/serve``, created 0700 and refused when it is
  not a private directory of ours), the kernel's ``SO_PEERCRED`` must name our uid, and a
  client must present the token in a 0600 file beside the socket (a sandboxed process of
  ours whose filesystem view does not include that file cannot use the service);
* only a caller in the same context: same user, mount, network, PID, IPC, UTS, cgroup and
  time namespaces, same root directory, same cgroups, credentials, capabilities,
  ``no_new_privs``, LSM label and resource limits, neither side in seccomp filter mode
  (whose filters ``/proc`` does not show), and a caller that may inspect the service: it
  must present the nonce named by the service's proof fd, which the kernel shows only
  through ``/proc/<service>/fd`` to a process with ptrace read access, refused to one in a
  Landlock domain (which ``/proc`` does not show either); and the other way round, the
  service must read back the nonce of the caller's own proof memfd before the caller
  hands it anything, so a process posing as the service from a sandbox gets nothing.
  A run made by the service is
  then the run the caller would have made; a confined caller (a workload, any sandbox)
  differs in at least one and is refused, so the service can never be a way out of a
  boundary;
* only a command of its own install (:mod:`.install`): the same interpreter, bvisor
  package, prefix, import path and ``PYTHON*``/``LD_*`` environment, since a copy runs
  the service's code, not the command's.

When anything is off — no service, a stale one (its code changed on disk), a different
context, stdin/stdout/stderr on a terminal, too many fds — the command runs in its own
process as before, and on-demand starts a service for next time unless ``BVISOR_SERVE=0``.
Once the service has accepted a command, the command never falls back (the run may have
begun): a lost service ends the command with status 125.

A copy inherits the service's planner memo, and as it leaves it tells the service (over a
pipe of its own) the specs it had to plan itself; the service plans them again while idle,
so the next command with the same spec finds its plan made (:mod:`.learned`; ``bvisor serve
--status`` counts both).

This package's client side (:mod:`.paths`, :mod:`.context`, :mod:`.install`, :mod:`.wire`,
:mod:`.client`)
imports only the standard library, and of it only what every Python process has loaded
and C modules (``_socket``, ``_signal``, ``_json``): a served command is its client and
nothing else, so it is a thin one (tests/front/test_lean_imports.py).
"""
