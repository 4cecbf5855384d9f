"""The DAG factory and the callables of its tasks."""
