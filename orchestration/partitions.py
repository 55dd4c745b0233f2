"""Studies are dynamic partitions: the landing sensor adds a key per study id it finds."""

import dagster as dg

STUDIES = "studies"
studies = dg.DynamicPartitionsDefinition(name=STUDIES)
