"""Third stage: user history + item context + business rules -> one search -> ranked items.

Also the live event store (SQLite) and the HTTP service. Nothing here imports pyspark.
"""

import logging

logger = logging.getLogger(__name__)
