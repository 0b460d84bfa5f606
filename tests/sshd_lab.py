"""A board on the bench, on this machine: a real OpenSSH server on 127.0.0.1 (a generated host
key and user key, a high port) that authorises one key and that clients trust by its host key
alone. Used by tests/integration/test_device_lab.py and bench/device_lab.py.

sshd comes from Debian's openssh-server (`make sshd`) and must start as root here
(privilege separation).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator, Optional

from integration.conftest import free_port, stop_process_group

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def unavailable() -> Optional[str]:
    """Why a loopback sshd cannot start here, or None."""
    if not Path(SSHD).is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "OpenSSH server/client not installed (make sshd, or apt-get install openssh-server)"
    if os.geteuid() != 0:
        return "sshd must start as root here (privilege separation)"
    return None


@contextlib.contextmanager
def loopback_sshd(root: Path) -> Iterator[dict]:
    """Start sshd in ``root`` (keys, authorized_keys, known_hosts for 127.0.0.1 and localhost,
    sshd.log); yield {"root", "port", "user"}; stop it on exit."""
    for key in ("host_key", "user_key", "other_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True)
    shutil.copy(root / "user_key.pub", root / "authorized_keys")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
    port = free_port()
    with open(root / "sshd.log", "w") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-p", str(port), "-h", str(root / "host_key"),
                                 "-o", "ListenAddress=127.0.0.1", "-o", f"AuthorizedKeysFile={root / 'authorized_keys'}",
                                 "-o", "StrictModes=no", "-o", f"PidFile={root / 'sshd.pid'}",
                                 "-o", "PasswordAuthentication=no"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    host_key = " ".join((root / "host_key.pub").read_text().split()[:2])
    # also as "localhost": a jump host the client must not take for a loop back to 127.0.0.1
    (root / "known_hosts").write_text("".join(f"[{h}]:{port} {host_key}\n" for h in ("127.0.0.1", "localhost")))
    try:
        deadline = time.monotonic() + 20
        while "Server listening" not in (root / "sshd.log").read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start:\n{(root / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield {"root": root, "port": port, "user": os.environ.get("USER") or "root"}
    finally:
        stop_process_group(proc)
