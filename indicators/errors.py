"""Errors of the indicator job; each carries the data a user needs to act."""

from __future__ import annotations

from dataclasses import dataclass


class JobError(Exception):
    """Base of every error the job raises for a cause the user can fix."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint


class JavaMissing(JobError):
    hint = "install Java 17+ (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"


class SettingsError(JobError):
    hint = "see docs/configuration.md"


@dataclass(frozen=True)
class BadRow:
    """One rejected input row: where it is and what is wrong with it."""

    file: str
    line: int
    field: str
    problem: str
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.problem}"


class BadInput(JobError):
    """Input rows were rejected and the run was not told to go on (--rejects)."""

    hint = "fix the rows, or pass --rejects PATH to write them there and go on with the rest"

    def __init__(self, rejected: int, total: int, first: list[BadRow]) -> None:
        shown = "; ".join(str(r) for r in first[:5])
        super().__init__(f"{rejected} of {total} input rows rejected: {shown}")
        self.rejected = rejected
        self.total = total
        self.first = first


class InputNotFound(JobError):
    hint = "give a file, a directory or a glob of CSV/TSV, JSON lines or Parquet files"


class StorageError(JobError):
    """pyarrow cannot open or list a URI's file system here; the hint names what it needs."""

    _HINTS = {
        "hdfs": "pyarrow reaches HDFS through libhdfs and Java: set JAVA_HOME, HADOOP_HOME "
                "(or ARROW_LIBHDFS_DIR) and CLASSPATH=$(hadoop classpath --glob) (docs/cluster.md)",
        "s3": "pyarrow's S3 takes AWS credentials from the environment, a profile or an instance role, "
              "and asks S3 for the bucket's region unless the URI gives ?region=... (docs/cluster.md)",
        "gs": "pyarrow's GCS takes Google's default credentials (GOOGLE_APPLICATION_CREDENTIALS) (docs/cluster.md)",
    }
    _SCHEMES = {"viewfs": "hdfs", "s3a": "s3", "s3n": "s3", "gcs": "gs"}

    def __init__(self, uri: str, reason: str) -> None:
        first = next((line.strip() for line in reason.splitlines() if line.strip()), "failed")
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else "file"
        hint = self._HINTS.get(self._SCHEMES.get(scheme, scheme),
                               "pyarrow opens local paths and file://, hdfs://, s3:// (s3a://), gs:// "
                               "and abfs:// URIs (docs/cluster.md)")
        super().__init__(f"cannot open {uri}: {first}", hint=hint)
        self.uri = uri
        self.reason = reason


class SparkOutOfMemory(JobError):
    """Spark ran out of memory; names the setting to raise."""


class ExecutorPython(JobError):
    """The executors' Python cannot run the job (a module missing, another interpreter)."""

    hint = ("point PYSPARK_PYTHON at a Python with cooccur's dependencies on every node "
            "(or ship one with spark.archives): docs/cluster.md")
