"""The validate stage: export DynamoDB, compute the expected items from MySQL, compare them
like a checksum diff, check column aggregates independently, and judge with Great
Expectations."""
