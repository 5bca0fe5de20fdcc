"""Java detection and the Spark session (built only by the job's entry point)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from .errors import JavaMissing


def check_java() -> str:
    """The Java version string; raises JavaMissing when Spark could not start a JVM."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise JavaMissing("Java was not found: Spark needs Java 17 or newer")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JavaMissing(f"{java} -version failed: {e}") from None
    text = out.stderr + out.stdout
    m = re.search(r'version "([^"]+)"', text)
    if out.returncode != 0 or not m:
        raise JavaMissing(f"{java} -version failed: {text.strip()[:200]}")
    return m.group(1)
