"""Second stage: item documents from a model directory into a versioned search backend."""

import logging

logger = logging.getLogger(__name__)
