"""Content digests and their memo: a digest is served from the memo only while the file's identity
on disk is unchanged, a same-size rewrite with the mtime set back is rehashed, a file changed a
moment ago is never remembered, and an unreadable memo is ignored."""

from __future__ import annotations

import hashlib
import os

import blake3
import pytest

import model.content_hash as content_hash
from model.content_hash import ContentHashes, FileIdentity, hash_file


@pytest.fixture
def counted(monkeypatch):
    calls = []

    def counting(path):
        calls.append(path)
        return hash_file(path)

    monkeypatch.setattr(content_hash, "hash_file", counting)
    return calls


def test_digest_is_blake3_of_the_bytes(tmp_path):
    data = os.urandom(3 * content_hash.READ_BLOCK // 2)
    (tmp_path / "f").write_bytes(data)
    assert hash_file(tmp_path / "f") == blake3.blake3(data).hexdigest()
    assert hash_file(tmp_path / "f") != hashlib.sha256(data).hexdigest()


def test_the_memo_serves_an_unchanged_file_and_rehashes_a_rewrite(tmp_path, counted, monkeypatch):
    monkeypatch.setattr(content_hash, "RACY_SECONDS", 0.0)
    path = tmp_path / "clip.bin"
    path.write_bytes(b"a" * 1000)
    first = ContentHashes(tmp_path)
    digest = first.digest(path)
    first.save()
    assert ContentHashes(tmp_path).digest(path) == digest and len(counted) == 1  # from the saved memo
    before = path.stat()
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert ContentHashes(tmp_path).digest(path) == blake3.blake3(b"b" * 1000).hexdigest()
    assert len(counted) == 2


def test_a_file_changed_a_moment_ago_is_not_remembered(tmp_path, counted):
    path = tmp_path / "fresh.bin"
    path.write_bytes(b"new")
    hashes = ContentHashes(tmp_path)
    hashes.digest(path)
    hashes.digest(path)
    assert len(counted) == 2 and not hashes.entries
    assert FileIdentity.of(path).is_racy(FileIdentity.of(path).ctime_ns)


@pytest.mark.parametrize("memo", [b"", b"{not json", b'{"format": "other"}', b"[1, 2]", bytes(100)])
def test_an_unreadable_memo_is_ignored(tmp_path, memo):
    (tmp_path / content_hash.MEMO_FILE).write_bytes(memo)
    path = tmp_path / "x"
    path.write_bytes(b"x")
    assert ContentHashes(tmp_path).digest(path) == blake3.blake3(b"x").hexdigest()


def test_a_planted_memo_entry_for_another_identity_is_not_served(tmp_path, monkeypatch):
    monkeypatch.setattr(content_hash, "RACY_SECONDS", 0.0)
    path = tmp_path / "x"
    path.write_bytes(b"x")
    hashes = ContentHashes(tmp_path)
    identity = FileIdentity.of(path)
    stale = FileIdentity(identity.path, identity.device, identity.inode, identity.size, identity.mtime_ns, 0)
    hashes.entries[stale.memo_key] = "0" * 64
    assert hashes.digest(path) == blake3.blake3(b"x").hexdigest()
