"""Message store: durability layout, integrity, encryption at rest, GC, streaming."""

import os
import stat
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssante.store import (
    SEGMENT,
    BlobCorrupted,
    BlobStore,
    StoreError,
    generate_key,
    load_key,
)

KEY = bytes(range(32))


@pytest.fixture(params=["encrypted", "plain"])
def store(request, tmp_path):
    return BlobStore(tmp_path / "blobs", KEY if request.param == "encrypted" else None)


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 17])
def test_round_trip_at_segment_boundaries(store, size):
    data = os.urandom(size)
    ref = store.put([data[i : i + 4096] for i in range(0, size, 4096)])
    assert ref.size == size
    assert store.read(ref.sha256) == data
    assert store.path(ref.sha256).parent.parent.parent == store.root
    assert not list((store.root / "tmp").iterdir()), "no temporary file left behind"


@settings(max_examples=40, deadline=None)
@given(chunks=st.lists(st.binary(max_size=3000), max_size=60))
def test_any_chunking_gives_the_same_blob(tmp_path_factory, chunks):
    store = BlobStore(tmp_path_factory.mktemp("b") / "blobs", KEY)
    whole = b"".join(chunks)
    assert store.put(chunks) == store.put(whole)
    assert store.read(store.put(chunks).sha256) == whole


def test_encrypted_blob_holds_no_plaintext(tmp_path):
    store = BlobStore(tmp_path / "blobs", KEY)
    secret = b"Subject: Compte rendu operatoire de Mme Martin\r\n" * 50
    ref = store.put(secret)
    on_disk = store.path(ref.sha256).read_bytes()
    assert b"Martin" not in on_disk and b"Subject" not in on_disk


def test_same_content_is_stored_once(store):
    a = store.put(b"hello")
    b = store.put(b"hello")
    assert a == b
    assert list(store.iter_digests()) == [a.sha256]


@pytest.mark.parametrize("offset", [0, 9, 20, 100, -1])
def test_a_flipped_byte_anywhere_is_detected(store, offset):
    ref = store.put(os.urandom(2 * SEGMENT + 100))
    path = store.path(ref.sha256)
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(raw)
    with pytest.raises(BlobCorrupted):
        store.read(ref.sha256)


def test_truncation_at_a_segment_boundary_is_detected(tmp_path):
    store = BlobStore(tmp_path / "blobs", KEY)
    ref = store.put(os.urandom(3 * SEGMENT))
    path = store.path(ref.sha256)
    raw = path.read_bytes()
    path.write_bytes(raw[: 15 + 2 * (SEGMENT + 16)])  # header + two whole segments
    with pytest.raises(BlobCorrupted):
        store.read(ref.sha256)


def test_a_blob_swapped_for_another_valid_blob_is_detected(store):
    a = store.put(b"message A")
    b = store.put(b"message B")
    store.path(a.sha256).write_bytes(store.path(b.sha256).read_bytes())
    with pytest.raises(BlobCorrupted):
        store.read(a.sha256)


def test_missing_blob_and_bad_digest_are_clear_errors(store):
    with pytest.raises(StoreError, match="missing"):
        store.read("0" * 64)
    with pytest.raises(StoreError, match="not a SHA-256"):
        store.read("../../etc/passwd")


def test_wrong_key_cannot_read(tmp_path):
    ref = BlobStore(tmp_path / "blobs", KEY).put(b"secret")
    with pytest.raises(BlobCorrupted):
        BlobStore(tmp_path / "blobs", bytes(32)).read(ref.sha256)


def test_blobs_written_before_encryption_was_enabled_still_read(tmp_path):
    ref = BlobStore(tmp_path / "blobs", None).put(b"old message")
    assert BlobStore(tmp_path / "blobs", KEY).read(ref.sha256) == b"old message"


def test_aborted_write_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.writer() as writer:
        writer.write(b"partial")
        raise RuntimeError("client went away")
    assert not list((store.root / "tmp").iterdir())
    assert not list(store.iter_digests())


def test_gc_removes_only_old_orphans_and_abandoned_temporaries(store):
    kept = store.put(b"referenced")
    orphan = store.put(b"orphan")
    young = store.put(b"young orphan")
    abandoned = store.root / "tmp" / "dead.part"
    abandoned.write_bytes(b"half a message")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    old = (now - timedelta(hours=2)).timestamp()
    for path in (store.path(kept.sha256), store.path(orphan.sha256), abandoned):
        os.utime(path, (old, old))
    os.utime(store.path(young.sha256), (now.timestamp(), now.timestamp()))

    report = store.gc({kept.sha256}, now=now, grace_seconds=3600)

    assert report.removed == (orphan.sha256,)
    assert report.temporary_removed == 1
    assert report.kept_young == 1
    assert store.read(kept.sha256) == b"referenced"
    assert store.exists(young.sha256)
    assert not store.exists(orphan.sha256)
    assert not abandoned.exists()


def test_fifty_megabytes_stream_in_bounded_memory(tmp_path):
    store = BlobStore(tmp_path / "blobs", KEY)
    chunk = os.urandom(1 << 20)
    tracemalloc.start()
    try:
        with store.writer() as writer:
            for _ in range(50):
                writer.write(chunk)
            ref = writer.commit()
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total = sum(len(part) for part in store.open(ref.sha256))
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert ref.size == total == 50 << 20
    # The caller's own 1 MiB chunk aside, the store holds a few segments at most.
    assert write_peak < 4 << 20, write_peak
    assert read_peak < 2 << 20, read_peak


def test_generated_key_is_private_and_loads(tmp_path):
    path = tmp_path / "keys" / "store.key"
    generate_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(load_key(path)) == 32
    with pytest.raises(FileExistsError):
        generate_key(path)  # never overwrite a key: blobs would become unreadable


def test_a_world_readable_or_malformed_key_is_refused(tmp_path):
    path = tmp_path / "store.key"
    path.write_text("ab" * 32)
    path.chmod(0o644)
    with pytest.raises(StoreError, match="chmod 600"):
        load_key(path)
    path.chmod(0o600)
    path.write_text("not hex")
    with pytest.raises(StoreError, match="64 hex digits"):
        load_key(path)
