"""The load stage: parallel BatchWriteItem of pre-serialized items, with backoff, rate limits
and metrics."""
