"""The lane's RESP packer sends what redis-py's own packer would, with hiredis and without."""

from __future__ import annotations

import pytest
from redis.connection import Connection

from tta_cache.tiers.redis import lane

COMMANDS = [
    (("GET", "tta:raw:k"),),
    (("MGET", *[f"tta:raw:char:{i}" for i in range(100)]),),
    (("SET", "tta:é:k", b"\x00\xffpayload", "PX", 86_400_000),),
    (("EVALSHA", "a" * 40, 2, "tta:t:user:u1", "tta:epoch", 1.5, 10**20, "ünïcode"),),
    (("GET", "a"), ("MGET", "b", "c"), ("SET", "d", b"e", "PX", 5)),
]


@pytest.mark.parametrize("commands", COMMANDS)
@pytest.mark.parametrize("packer", ["py", "hiredis"])
def test_packing_matches_redis_py(commands: tuple[tuple[object, ...], ...], packer: str) -> None:
    conn = Connection()
    pack = lane._packed_py if packer == "py" else lane._packed_hiredis
    if packer == "hiredis":
        pytest.importorskip("hiredis")
    expected = b"".join(b"".join(conn.pack_command(*command)) for command in commands)
    assert b"".join(pack(conn, commands)) == expected


def test_text_is_encoded_with_the_connections_encoding() -> None:
    # (redis-py's own hiredis packer ignores the encoding; its Python packer honours it)
    conn = Connection(encoding="latin-1")
    commands = (("SET", "tta:café", "é"),)
    expected = b"*3\r\n$3\r\nSET\r\n$8\r\ntta:caf\xe9\r\n$1\r\n\xe9\r\n"
    assert b"".join(lane._packed_hiredis(conn, commands)) == expected
    assert b"".join(lane._packed_py(conn, commands)) == expected
