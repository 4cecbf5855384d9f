"""Airflow plugin: the "Migrations" panel of every cutover contract, in the UI's navigation.

The page and its JSON API are a FastAPI app mounted at /migrations (see
cutover.panel.app); every route checks the Airflow user and their access to the contract's
DAGs. Kept light: the app's routes import what they need when called."""

from airflow.plugins_manager import AirflowPlugin

from cutover.panel.app import create_app


class CutoverMigrationsPlugin(AirflowPlugin):
    name = "cutover_migrations"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/migrations", "name": "Migrations"}]
    external_views = [
        {
            "name": "Migrations",
            "href": "/migrations/",
            "destination": "nav",
            "url_route": "migrations",
            "nav_top_level": True,
        }
    ]
