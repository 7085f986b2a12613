"""`agent-server …` run as a user would: a subprocess, with none of this shell's AGENT_ settings.

(Kept out of `conftest.py`: `import conftest` would find whichever conftest came first.)
"""

from __future__ import annotations

import os
import subprocess
import sys


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    return subprocess.run(
        [sys.executable, "-m", "agent_server.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, **env},
    )
