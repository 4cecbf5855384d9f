"""Backfill runs: extract, transform, load and catch-up of a contract, resumable."""
