"""Airflow DAGs of every contract in contracts/: prepare, backfill, validate, reconcile,
sync, phase_gate and rollback. Configuration only: the factory does the wiring."""

from cutover.dags.factory import build_all

globals().update(build_all())
