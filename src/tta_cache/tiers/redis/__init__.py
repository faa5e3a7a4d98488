"""L2: Redis (standalone, Sentinel, Cluster) through redis-py, sync and asyncio.

One concern a module; what other layers use is re-exported by :mod:`tta_cache.tiers`::

    config     RedisConfig: URL parsing, settings
    clients    redis-py clients for a config (standalone, Sentinel, Cluster; sync, asyncio)
    pools      blocking pools that count the checkouts that waited
    lane       connections kept between uses for the hot commands
    scripts    the Lua scripts
    commands   what each operation sends (Lease, command and script-argument builders)
    replies    what Redis answers (Read, parsers, Cluster multi-command generators)
    errors     the one translation of redis-py errors into BackendError
    figures    corrupt keys replaced and pool waits, for stats()
    base       what the two tiers share; sync, asyncio: the two tiers, I/O only
"""
