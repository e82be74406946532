"""cffi API-mode builder for ``bvisor.launcher._child_window`` (the C child window).

Used two ways: by setuptools (``setup.py`` lists ``cffi_modules`` pointing at
``ffibuilder``), and by :mod:`bvisor.launcher.basement.window` to build the module in place
on first use from a source checkout.

The module is one core (``process/child/window.c``: clone3, the program runner, the
status protocol), the helpers every phase shares (``process/child/phase.c``, declared with
the program's types in ``phase.h``), one C phase per mechanism beside its Python module
(``process/mechanisms/<name>.c``), and the namespace probe (``basement/probe.c``). The
declarations cffi needs are the blocks each file marks ``BEGIN/END CFFI DECLARATIONS``, so
the structs Python fills are exactly the structs compiled. All sources are shipped as
package data and hashed into the launcher's code identity through the compiled module.
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

__all__ = ["C_SOURCES", "MODULE_NAME", "ffibuilder"]

MODULE_NAME = "bvisor.launcher._child_window"
_LAUNCHER = Path(__file__).resolve().parent.parent
_CORE = _LAUNCHER / "process" / "child"
C_SOURCES = (
    _CORE / "window.c",
    _CORE / "phase.c",
    *sorted((_LAUNCHER / "process" / "mechanisms").glob("*.c")),
    _LAUNCHER / "basement" / "probe.c",
)
_HEADERS = (_CORE / "phase.h", _CORE / "window.h")  # the program's types first

_BEGIN = "/* BEGIN CFFI DECLARATIONS"
_END = "/* END CFFI DECLARATIONS */"


def _declarations(source: str) -> str:
    """A file's marked declaration blocks, minus their comment lines."""
    blocks = []
    rest = source
    while _BEGIN in rest:
        block = rest[rest.index(_BEGIN) : rest.index(_END)]
        blocks.append(block[block.index("*/") + 2 :].strip())
        rest = rest[rest.index(_END) + len(_END) :]
    return "\n".join(blocks) + "\n"


_SOURCE_DECLARATIONS = "".join(
    _declarations(path.read_text(encoding="utf-8")) for path in C_SOURCES
)
CDEF = (
    "".join(_declarations(path.read_text(encoding="utf-8")) for path in _HEADERS)
    + _SOURCE_DECLARATIONS
)


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    MODULE_NAME,
    # The generated module sees the same declarations cffi was given (each source file
    # compiles its own copy of its block; the text is one and the same).
    '#include "window.h"\n' + _SOURCE_DECLARATIONS,
    # setuptools wants paths relative to the project; a build on first use runs elsewhere.
    sources=[_relative(path) for path in C_SOURCES],
    include_dirs=[_relative(_CORE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
