"""Java detection and the one place a Spark session is made, reused and stopped.

pyspark is imported inside the functions: importing this module costs nothing, so the
pyspark-free parts (the update's fold, serving) can share its errors and checks.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ExecutorPython, JavaMissing

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
EXECUTOR_MODULES = ("numpy", "scipy", "pyarrow")
"""What the job's functions import on the executors (pyspark itself comes with Spark)."""


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


def is_local(master: str) -> bool:
    """True for local[...] masters (driver and executors are this process's JVM)."""
    return master.startswith("local")


def build_spark_session(
    master: str = "local[*]", options: dict[str, str] | None = None, app_name: str = "cooccur"
) -> SparkSession:
    """A Spark session for the job: UTC, Arrow on, bound to loopback in local mode. On a
    cluster, this package is shipped to the executors and their Python is checked
    (`check_executors`) before any heavy work."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(master).appName(app_name)
    # py4j logs every connection close at INFO; Spark's start-up chatter goes via log4j.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    java_options = f"-Dlog4j.configurationFile={LOG4J_CONFIG}"
    defaults = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": str(sys.stderr.isatty()).lower(),  # piped, bars splice into lines
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.adaptive.enabled": "true",
        "spark.driver.extraJavaOptions": java_options,
        "spark.executor.extraJavaOptions": java_options,
    }
    if is_local(master):
        # Bind to loopback: no lookups of the machine's name, no exposed ports.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        defaults.update({
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            # Small local jobs drown in 200 shuffle tasks; AQE coalesces further.
            "spark.sql.shuffle.partitions": str(max(4, 2 * (os.cpu_count() or 2))),
        })
        # Python workers must be this interpreter (the virtualenv that has cooccur). On a
        # cluster the executors' Python is the deployment's choice: check_executors.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for key, value in {**defaults, **(options or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    if not is_local(master):
        session.sparkContext.addPyFile(_package_zip())
        check_executors(session)
    return session


@contextmanager
def spark_session(
    master: str = "local[*]", options: dict[str, str] | None = None, app_name: str = "cooccur"
) -> Iterator[SparkSession]:
    """Check Java, start (or reuse) a Spark session, and stop it at the end if it was
    started here. A session already running in this process (a notebook's, the test
    suite's) is reused and left running: getOrCreate returns it anyway, and stopping it is
    not ours to do."""
    from pyspark.sql import SparkSession

    check_java()
    owned = SparkSession.getActiveSession() is None
    spark = build_spark_session(master, options, app_name)
    try:
        yield spark
    finally:
        if owned:
            spark.stop()


def _package_zip() -> str:
    """This package as a zip for a cluster's Python workers (they unpickle its functions)."""
    package = Path(__file__).parent
    target = Path(tempfile.mkdtemp(prefix="cooccur-")) / "indicators.zip"
    with zipfile.ZipFile(target, "w") as z:
        for f in package.glob("*.py"):
            z.write(f, f"indicators/{f.name}")
    return str(target)


def _probe(_rows) -> Iterator[tuple[str, str, str]]:
    """On an executor: (its python, its version, the modules it cannot import)."""
    import importlib
    import platform
    import sys as executor_sys

    missing = []
    for name in EXECUTOR_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    yield executor_sys.executable, platform.python_version(), ",".join(missing)


def check_executors(spark: SparkSession) -> None:
    """Run one tiny task per executor core and raise ExecutorPython, with the fix in one
    line, when the executors' Python cannot run the job (a module missing, or no such
    interpreter): before any heavy work, instead of a worker traceback mid-job."""
    sc = spark.sparkContext
    n = max(1, sc.defaultParallelism)
    try:
        found = set(sc.parallelize(range(n), n).mapPartitions(_probe).collect())
    except Exception as e:  # noqa: BLE001 - Py4JJavaError wraps the executors' failure
        text = str(e)
        cause = next((line.strip() for line in text.splitlines()
                      if "Error" in line and ("No module" in line or "Cannot run program" in line
                                              or "different version" in line)), None)
        raise ExecutorPython(
            f"the Spark executors cannot run the job's Python: {cause or text.splitlines()[0][:200]}"
        ) from None
    broken = sorted((exe, version, missing) for exe, version, missing in found if missing)
    if broken:
        exe, version, missing = broken[0]
        raise ExecutorPython(
            f"the Spark executors' Python ({exe}, {version}) cannot import {missing.replace(',', ', ')}"
        )
