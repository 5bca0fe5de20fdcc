"""Java detection and the one place a Spark session is made, reused and stopped.

pyspark is imported inside the functions: importing this module costs nothing, so the
pyspark-free parts (the update's fold, serving) can share its errors and checks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from .errors import ExecutorPython, JavaMissing

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
EXECUTOR_MODULES = ("numpy", "scipy", "pyarrow")
"""What the job's functions import on the executors (pyspark itself comes with Spark)."""
INCUBATOR_WARNING = b"WARNING: Using incubator modules: "
"""The line the JVM prints at start-up when it resolves a jdk.incubator.* module. Spark 4's
launcher always adds --add-modules=jdk.incubator.vector (org.apache.spark.launcher.
JavaModuleOptions), and the JDK has no option to silence the line (jdk.internal.module.
ModuleBootstrap prints it to stderr): the gateway's stderr goes through JvmStderrFilter."""


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

    builder = SparkSession.builder
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
    conf = {"spark.master": master, "spark.app.name": app_name, **defaults, **(options or {})}
    _start_gateway(conf)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    if not is_local(master):
        session.sparkContext.addPyFile(_package_zip())
        check_executors(session)
    return session


class JvmStderrFilter:
    """Drops the JVM's INCUBATOR_WARNING line from the gateway's stderr; every other byte passes
    through in order and at once (a partial line is held back only while it may still become
    the warning, so a terminal's progress bar keeps moving). After the warning, all passes."""

    def __init__(self) -> None:
        self.held = b""
        self.line_start = True
        self.dropped = False

    def feed(self, data: bytes) -> bytes:
        """The part of `data` (after what was held back) to write now."""
        if self.dropped:
            return data
        data, self.held = self.held + data, b""
        out: list[bytes] = []
        while data and not self.dropped:
            nl = data.find(b"\n")
            line = data if nl < 0 else data[: nl + 1]
            if self.line_start and (line.startswith(INCUBATOR_WARNING) or INCUBATOR_WARNING.startswith(line)):
                if nl < 0:  # the warning, or maybe: wait for the rest of the line
                    self.held = data
                    return b"".join(out)
                if line.startswith(INCUBATOR_WARNING):
                    self.dropped = True
                    data = data[nl + 1:]
                    continue
            out.append(line)
            self.line_start = nl >= 0
            data = data[len(line):]
        out.append(data)
        return b"".join(out)

    def close(self) -> bytes:
        """What is still held back at the end of the stream."""
        held, self.held = self.held, b""
        return held


def _pass_stderr(pipe: IO[bytes]) -> None:
    """Copy the JVM's stderr to this process's (fd 2, where the JVM wrote before) through the
    filter, until the JVM exits. Never stops reading early: a full pipe would block the JVM."""
    flt = JvmStderrFilter()
    with open(2, "wb", closefd=False) as err:
        for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
            try:
                err.write(flt.feed(chunk))
                err.flush()
            except (OSError, ValueError):  # stderr closed: keep draining the pipe
                pass
        with contextlib.suppress(OSError, ValueError):
            err.write(flt.close())


def _start_gateway(conf: dict[str, str]) -> None:
    """Start Spark's JVM (the py4j gateway, as SparkContext would, with the same settings) with
    its stderr piped through JvmStderrFilter. Nothing to do when a gateway already runs in this
    process (a notebook's, an earlier session's) or pyspark was told to use one."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    # popen_kwargs and gateway.proc are pyspark's hooks for capturing the JVM's output.
    gateway = launch_gateway(SparkConf(loadDefaults=False).setAll(list(conf.items())),
                             popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(target=_pass_stderr, args=(gateway.proc.stderr,), name="spark-jvm-stderr",
                     daemon=True).start()
    SparkContext._ensure_initialized(gateway=gateway)


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
