"""The ``toolops`` console script: runs the C++ ``toolops`` command
installed with the package, with the same arguments and exit code."""

from __future__ import annotations

import os
import sys


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(here, "bin", "toolops")
    if not os.access(binary, os.X_OK):
        sys.stderr.write(f"toolops: the command binary is missing at {binary}; reinstall the "
                         "package (pip install .)\n")
        return 2
    env = dict(os.environ)
    model = os.path.join(here, "models", "minilm-static")
    if not env.get("TOOLOPS_MODEL_DIR") and os.path.isdir(model):
        env["TOOLOPS_MODEL_DIR"] = model
    os.execve(binary, [binary, *sys.argv[1:]], env)
    return 0  # Not reached.


if __name__ == "__main__":
    raise SystemExit(main())
