"""Encryption at rest in the codec: AES-256-GCM per kind, key ids, rotation, associated data."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from tta_cache.codec import Codec, Sealing, encryption_keys, generate_key, keys_from_env
from tta_cache.codec.encryption import NONCE_SIZE, TAG_SIZE, Encryptor
from tta_cache.exceptions import ConfigurationError, DecodeError

K1 = bytes(range(32))
K2 = bytes(range(100, 132))
SIGNING = b"s" * 32
KEY = "tta:emotional:game.load:'u1"
SECRET = "feels-anxious-about-exams"
VALUE = {"user_id": "u1", "note": SECRET, "intensity": 0.75}
HEADER = struct.Struct("<2sBBBddfHI")
ENCRYPTED = 0x08


def codec(keys: Any = None, kinds: Any = None, **options: Any) -> Codec:
    return Codec(
        encryption_keys={"k2": K2, "k1": K1} if keys is None else keys,
        encrypt_kinds=kinds,
        namespace="tta",
        **options,
    )


def enc(c: Codec, value: Any = VALUE, *, key: str = KEY, kind: str = "emotional") -> bytes:
    return c.encode(value, stamp=(("*", 1), ("user:u1", 3)), key=key, kind=kind)


# --- what is encrypted ------------------------------------------------------------------------


@pytest.mark.parametrize("serializer", ["json", "msgpack", "pickle"])
@pytest.mark.parametrize("compress", [None, 0])
@pytest.mark.parametrize("signed", [False, True])
def test_an_encrypted_entry_round_trips(
    serializer: str, compress: int | None, signed: bool
) -> None:
    signing = SIGNING if signed or serializer == "pickle" else None
    c = codec(
        serializer=serializer,
        compress_min_bytes=compress,
        signing_key=signing,
        compress_encrypted=compress is not None,
    )
    data = enc(c)
    assert data[4] & ENCRYPTED
    entry = c.decode(data, key=KEY, kind="emotional")
    assert entry.value == VALUE
    assert entry.stamp == (("*", 1), ("user:u1", 3))


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_the_bytes_of_an_encrypted_entry_hold_no_plaintext(serializer: str) -> None:
    c = codec(serializer=serializer, compress_min_bytes=None)
    data = enc(c)
    for needle in (SECRET, "intensity", "user_id", "u1\x00"):
        assert needle.encode() not in data
    assert b"user:u1" in data  # the stamp's tags are metadata, in clear (docs/security.md)


def test_keys_set_and_no_kinds_given_encrypt_emotional_and_therapeutic_only() -> None:
    c = codec()
    for kind in ("emotional", "therapeutic"):
        assert enc(c, kind=kind)[4] & ENCRYPTED
    for kind in ("session", "character", "narrative", "default"):
        assert not enc(c, kind=kind)[4] & ENCRYPTED


def test_star_encrypts_every_kind_and_named_kinds_only_those() -> None:
    assert enc(codec(kinds="*"), kind="session")[4] & ENCRYPTED
    named = codec(kinds=("session",))
    assert enc(named, kind="session")[4] & ENCRYPTED
    assert not enc(named, kind="emotional")[4] & ENCRYPTED


def test_encrypt_kinds_without_keys_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="encrypt_kinds needs encryption_keys"):
        Codec(encrypt_kinds="*")


def test_every_write_draws_a_fresh_nonce() -> None:
    c = codec()
    a, b = enc(c), enc(c)
    assert a != b
    assert len(a) == len(b)


def test_encrypted_entries_are_not_compressed_unless_asked() -> None:
    big = {"note": SECRET * 200}
    data = enc(codec(compress_min_bytes=0), big)
    assert not data[4] & 0x01
    assert len(data) > len(SECRET) * 200
    assert enc(codec(compress_min_bytes=0), big, kind="session")[4] & 0x01  # other kinds are


def test_with_compress_encrypted_the_compressed_payload_is_what_is_encrypted() -> None:
    c = codec(compress_min_bytes=0, compress_encrypted=True)
    big = {"note": SECRET * 200}
    data = enc(c, big)
    assert len(data) < len(SECRET) * 20
    assert data[4] & 0x01  # zlib, then encrypted
    assert c.decode(data, key=KEY, kind="emotional").value == big
    assert codec().decode(data, key=KEY, kind="emotional").value == big  # any reader opens it


def test_the_envelope_records_the_current_key_id_and_the_kind_in_clear() -> None:
    data = enc(codec())
    assert b"\x02k2\x09emotional" in data
    assert Codec.key_id_of(data) == "k2"
    assert Codec.key_id_of(enc(codec(), kind="session")) is None
    # header + stamp + (1 + 2) + (1 + 9) + nonce + ciphertext + tag
    assert len(data) > NONCE_SIZE + TAG_SIZE


# --- rotation: the first key encrypts, every key decrypts -----------------------------------


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old = codec({"k1": K1})
    new = codec({"k2": K2, "k1": K1})
    written_old = enc(old)
    assert Codec.key_id_of(written_old) == "k1"
    assert new.decode(written_old, key=KEY, kind="emotional").value == VALUE
    assert Codec.key_id_of(enc(new)) == "k2"
    with pytest.raises(DecodeError, match="unknown key id 'k2'"):
        old.decode(enc(new), key=KEY, kind="emotional")


def test_once_an_old_key_is_removed_its_entries_are_unreadable() -> None:
    written = enc(codec({"k1": K1}))
    with pytest.raises(DecodeError, match="unknown key id 'k1'"):
        codec({"k2": K2}).decode(written, key=KEY, kind="emotional")


def test_the_same_key_id_with_another_key_does_not_authenticate() -> None:
    written = enc(codec({"k1": K1}))
    with pytest.raises(DecodeError, match="does not authenticate"):
        codec({"k1": K2}).decode(written, key=KEY, kind="emotional")


# --- associated data: namespace, Redis key, kind, and the header ----------------------------


def test_a_ciphertext_read_under_another_key_does_not_authenticate() -> None:
    data = enc(codec())
    with pytest.raises(DecodeError, match="does not authenticate"):
        codec().decode(data, key=KEY + "x", kind="emotional")


def test_a_ciphertext_read_in_another_namespace_does_not_authenticate() -> None:
    data = enc(codec())
    other = Codec(encryption_keys={"k2": K2}, namespace="tta2")
    with pytest.raises(DecodeError, match="does not authenticate"):
        other.decode(data, key=KEY, kind="emotional")


def test_a_reader_of_another_kind_refuses_the_entry() -> None:
    data = enc(codec())
    with pytest.raises(DecodeError, match="encrypted as kind 'emotional', read as 'therapeutic'"):
        codec().decode(data, key=KEY, kind="therapeutic")


def test_a_reader_that_names_no_kind_takes_the_recorded_one() -> None:
    assert codec().decode(enc(codec()), key=KEY).value == VALUE


def test_a_relabelled_kind_does_not_authenticate() -> None:
    data = bytearray(enc(codec(), kind="emotional"))
    at = data.index(b"emotional")
    data[at : at + 9] = b"emotionaX"
    with pytest.raises(DecodeError, match="does not authenticate"):
        codec(kinds="*").decode(bytes(data), key=KEY)


def test_restamped_header_fields_do_not_authenticate() -> None:
    data = bytearray(enc(codec()))
    fields = list(HEADER.unpack_from(data))
    fields[5] += 3600.0  # fresh_until: an attacker keeping an entry fresh
    HEADER.pack_into(data, 0, *fields)
    with pytest.raises(DecodeError, match="does not authenticate"):
        codec().decode(bytes(data), key=KEY, kind="emotional")


# --- downgrade ------------------------------------------------------------------------------


def test_an_unencrypted_entry_of_an_encrypted_kind_is_refused() -> None:
    plain = Codec(namespace="tta").encode(VALUE, key=KEY, kind="emotional")
    with pytest.raises(DecodeError, match="not encrypted, as it must be"):
        codec().decode(plain, key=KEY, kind="emotional")


def test_an_unencrypted_entry_of_another_kind_is_read() -> None:
    plain = Codec(namespace="tta").encode(VALUE, key=KEY, kind="session")
    assert codec().decode(plain, key=KEY, kind="session").value == VALUE


def test_a_reader_that_names_no_kind_refuses_plaintext_only_when_every_kind_is_encrypted() -> None:
    plain = Codec(namespace="tta").encode(VALUE, key=KEY)
    assert codec().decode(plain, key=KEY).value == VALUE
    with pytest.raises(DecodeError, match="not encrypted"):
        codec(kinds="*").decode(plain, key=KEY)


def test_a_reader_without_keys_refuses_an_encrypted_entry() -> None:
    with pytest.raises(DecodeError, match="no encryption keys"):
        Codec().decode(enc(codec()), key=KEY, kind="emotional")


# --- keys: bytes, base64 text, the environment ----------------------------------------------


def test_keys_are_bytes_or_base64_text_in_either_alphabet_padded_or_not() -> None:
    std = base64.b64encode(K2).decode()
    url = base64.urlsafe_b64encode(K2).decode().rstrip("=")
    for given in (K2, bytearray(K2), std, url, f"  {std}\n"):
        assert encryption_keys({"k": given}) == {"k": K2}


def test_keys_as_text_keep_their_order() -> None:
    text = f"k2:{base64.b64encode(K2).decode()}, k1:{base64.b64encode(K1).decode()}"
    assert list(encryption_keys(text).items()) == [("k2", K2), ("k1", K1)]


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TTA_CACHE_ENCRYPTION_KEYS", raising=False)
    assert keys_from_env() is None
    monkeypatch.setenv("TTA_CACHE_ENCRYPTION_KEYS", f"new:{generate_key()},old:{generate_key()}")
    keys = keys_from_env()
    assert keys is not None
    assert list(keys) == ["new", "old"]
    assert all(len(k) == 32 for k in keys.values())


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"k": K1[:16]}, "is 16 bytes; AES-256 needs exactly 32"),
        ({"k": base64.b64encode(K1[:31]).decode()}, "is 31 bytes"),
        ({"k": "not base64 at all!"}, "is not base64 text"),
        ({"bad id": K1}, "key id 'bad id' must match"),
        ({"": K1}, "must match"),
        ({"k": 42}, "must be 32 bytes or their base64 text, not int"),
        ({}, "is empty"),
        ("k1", "'id:base64' pairs"),
        (["k1"], "must be a {key_id: key} mapping"),
    ],
)
def test_malformed_keys_are_configuration_errors_that_never_quote_the_key(
    keys: Any, message: str
) -> None:
    with pytest.raises(ConfigurationError, match="encryption") as caught:
        Codec(encryption_keys=keys)
    assert message in str(caught.value)
    for k in (K1, K1[:16], K1[:31]):
        assert base64.b64encode(k).decode() not in str(caught.value)
        assert repr(k) not in str(caught.value)


def test_generated_keys_are_32_random_bytes_in_base64() -> None:
    a, b = generate_key(), generate_key()
    assert a != b
    assert len(base64.b64decode(a)) == 32


def test_an_encryptor_needs_a_key_and_known_kinds() -> None:
    with pytest.raises(ConfigurationError):
        Encryptor({}, "*", "tta")
    with pytest.raises(ConfigurationError, match="is not a kind"):
        Encryptor({"k": K1}, ("emo tional",), "tta")


def test_the_codec_repr_names_key_ids_and_kinds_and_no_key() -> None:
    text = repr(codec())
    assert "'k2'" in text
    assert "emotional,therapeutic" in text
    for k in (K1, K2):
        assert repr(k) not in text
        assert base64.b64encode(k).decode() not in text


# --- reseal: what rotate-keys runs ----------------------------------------------------------


def test_reseal_moves_an_entry_from_an_old_key_to_the_current_one() -> None:
    old = enc(codec({"k1": K1}))
    sealing, new = codec().reseal(old, key=KEY)
    assert sealing == Sealing("k1", None)
    assert new is not None
    assert Codec.key_id_of(new) == "k2"
    assert codec({"k2": K2}).decode(new, key=KEY, kind="emotional") == codec().decode(
        old, key=KEY, kind="emotional"
    )
    assert codec().reseal(new, key=KEY) == (Sealing("k2", None), None)


def test_reseal_signs_again_with_the_current_signing_key() -> None:
    old_signer = Codec(signing_key=[b"old" * 11], namespace="tta")
    both = Codec(signing_key=[b"new" * 11, b"old" * 11], namespace="tta")
    data = old_signer.encode(VALUE, key=KEY, kind="session")
    sealing, new = both.reseal(data, key=KEY)
    assert sealing == Sealing(None, 1)
    assert new is not None
    assert Codec(signing_key=b"new" * 11).decode(new, key=KEY).value == VALUE
    assert both.reseal(new, key=KEY) == (Sealing(None, 0), None)


def test_reseal_of_a_signed_and_encrypted_entry_renews_both() -> None:
    old = Codec(signing_key=[b"old" * 11], encryption_keys={"k1": K1}, namespace="tta")
    new = Codec(
        signing_key=[b"new" * 11, b"old" * 11],
        encryption_keys={"k2": K2, "k1": K1},
        namespace="tta",
    )
    sealing, data = new.reseal(enc(old), key=KEY)
    assert sealing == Sealing("k1", 1)
    assert data is not None
    only_new = Codec(signing_key=b"new" * 11, encryption_keys={"k2": K2}, namespace="tta")
    assert only_new.decode(data, key=KEY, kind="emotional").value == VALUE


def test_reseal_never_blesses_what_it_cannot_verify() -> None:
    signer = Codec(signing_key=SIGNING, namespace="tta")
    with pytest.raises(DecodeError, match="not signed"):
        signer.reseal(Codec(namespace="tta").encode(VALUE), key=KEY)
    with pytest.raises(DecodeError, match="no signing key to sign it again"):
        Codec(namespace="tta").reseal(signer.encode(VALUE), key=KEY)
    with pytest.raises(DecodeError, match="unknown key id"):
        codec({"k3": K2}).reseal(enc(codec({"k1": K1})), key=KEY)
    with pytest.raises(DecodeError, match="does not authenticate"):
        codec().reseal(enc(codec({"k1": K1})), key=KEY + "x")


def test_an_unencrypted_unsigned_entry_needs_no_reseal() -> None:
    assert codec().reseal(Codec().encode(VALUE), key=KEY) == (Sealing(None, None), None)


def test_no_encrypt_kinds_decrypts_and_refuses_nothing_for_a_two_step_rollout() -> None:
    step_one = codec(kinds=())
    sealed = enc(codec())
    plain = Codec(namespace="tta").encode(VALUE, key=KEY, kind="emotional")
    assert not enc(step_one)[4] & ENCRYPTED  # encrypts nothing
    assert step_one.decode(sealed, key=KEY, kind="emotional").value == VALUE  # reads ciphertext
    assert step_one.decode(plain, key=KEY, kind="emotional").value == VALUE  # and plaintext
