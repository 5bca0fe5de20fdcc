"""First stage: the PySpark job that turns events into LLR indicators, rankings and properties.

Importing this package does not import pyspark; the job's modules do.
"""

import logging

logger = logging.getLogger(__name__)
