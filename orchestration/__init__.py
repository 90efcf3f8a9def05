"""Dagster orchestration for nextbest: assets by stage, resources, sensors and schedules."""
