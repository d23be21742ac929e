"""Published measured training runs (``runs.csv``, cited in ``SOURCES.md``) and the check of the
cost model against them (:mod:`.check`, ``perfmodel check published``)."""
