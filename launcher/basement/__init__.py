"""The basement: the only modules in bvisor that make raw confinement syscalls.

Everything above (``bvisor.launcher.process.main``, ``bvisor.launcher.host.launch``)
orchestrates these small
wrappers; keeping them here makes the set of kernel interfaces bvisor touches auditable in
one place. ``child_window.c`` is the C code that runs between clone3 and exec;
``cgroups.py`` is the host's cgroupfs interface (leaves, limits, counters, kill).
"""
