"""Where MySQL's binlog stands and how far DynamoDB has followed it: shared by the sync (which
moves the checkpoint), the backfill (which records the position before its snapshot) and the
routing layer (whose phase-3 shadow reads judge a difference only once the sync has applied
what MySQL had when it was read).

* ``position``: a binlog position (file, offset, GTID), its ordinal (the item version), the
  server's current position;
* ``checkpoint``: the sync's position in the control table, advanced only after DynamoDB has
  the items of every transaction up to it.
"""
