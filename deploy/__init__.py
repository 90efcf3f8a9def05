"""Production deployment: PostgreSQL-backed Dagster and MLflow, and the dbt postgres target."""
