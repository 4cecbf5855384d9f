# cutover: `make demo` and `make test` install what is missing, start the services and run.
SHELL := /bin/bash
VENV  := .venv/bin
# The test suite gets its own DynamoDB Local on 8001, in memory: fast, and never mixed with
# the data of `make demo` on 8000.
# Two pytest-xdist workers, each taking whole modules (tests/conftest.py orders them longest
# first); every worker is a session of its own, with its own prefix, databases and Airflow home.
TEST_WORKERS ?= 2
TEST_ENV := CUTOVER_DYNAMODB_ENDPOINT=http://127.0.0.1:8001 CUTOVER_MYSQL_URL=mysql://root@127.0.0.1:3307/shop

.PHONY: setup up down status demo test lint bench airflow cluster cluster-down

setup:
	@bash scripts/setup.sh

up: setup
	@source scripts/local.env && $(VENV)/cutover up

down:
	@source scripts/local.env && $(VENV)/cutover down

status:
	@source scripts/local.env && $(VENV)/cutover status

demo: setup
	@source scripts/local.env && $(VENV)/cutover demo

test: setup
	@export $(TEST_ENV) && source scripts/local.env && $(VENV)/cutover up --in-memory \
	  && $(VENV)/ruff check . && $(VENV)/pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

lint: setup
	@$(VENV)/ruff check . && $(VENV)/ruff format --check .

bench: setup
	@source scripts/local.env && $(VENV)/cutover up && $(VENV)/cutover bench --json .local/bench.json

airflow: setup
	@bash scripts/airflow.sh

# Airflow on the CeleryExecutor, PostgreSQL and Redis, two workers: docker-compose.yml's shape
cluster: setup
	@bash scripts/cluster.sh

cluster-down:
	@bash scripts/cluster-down.sh
