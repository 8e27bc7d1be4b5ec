"""From records to tables and figures: statistics, comparisons to controls, replication of published
numbers, campaign and study tables, and the report that writes them all."""
