"""File digests: what names a checkpoint's content in the dynamic-evaluation cache key, and what
the corpus preparation checks downloads against."""
import hashlib


def sha256_of(path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
