"""What people look at: plots for Dagster metadata and study reports."""
