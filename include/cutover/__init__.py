"""cutover: contract-driven, zero-downtime migration from MySQL to DynamoDB."""

__version__ = "0.1.0"
