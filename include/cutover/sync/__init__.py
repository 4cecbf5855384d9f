"""One store follows the other from its log. In phases 1-3 DynamoDB follows MySQL's binlog:

* ``reader``: row events of the contract's database, grouped into committed transactions;
* ``mapper``: changed rows -> the item keys they feed (a reverse dependency index built from
  the parsed contract), with the full re-derivation of an entity as the documented fallback;
* ``applier``: re-derive those items with the view SELECT (the backfill's code path) and
  write or delete them guarded by the position;
* ``preflight``: the server settings the sync needs, each failure one line with its fix;
* ``runner``: ``run_sync`` (what `cutover sync` and the ``<contract>__sync`` DAG call).

Positions and the checkpoint live in ``cutover.binlog``, below this package and the routing
layer, which both read them.
"""
