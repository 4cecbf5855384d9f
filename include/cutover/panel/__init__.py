"""The Migrations panel: what the Airflow plugin shows and serves, per contract."""
