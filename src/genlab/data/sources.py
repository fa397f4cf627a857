"""Where genlab's named datasets are published, and the checksums their files must match.

Each dataset lists its official location first and the published mirrors after it (the ones torchvision,
Keras/TensorFlow Datasets and the dataset's own repository use). Every file carries the MD5 its publisher
gives for the file as distributed:

- MNIST: the gz files' MD5s as distributed (and as torchvision checks them); ``content_md5`` is the MD5 of the
  decompressed IDX file, the figure MNIST's users have checked for two decades (``6bbc9ace...`` for the training
  images), so a re-compressed copy with the same bytes inside is recognised too.
- Fashion-MNIST: the MD5s in the table of its repository's README (zalandoresearch/fashion-mnist). The
  decompressed contents' MD5s: the labels' computed from that repository's own gz files (which match the
  README's MD5s); the images' as other projects record them for the official release (the repository's image
  files are not in genlab's reach). Only the README's MD5s are the publisher's own.
- CIFAR-10: the MD5 on its page (https://www.cs.toronto.edu/~kriz/cifar.html) of the binary version,
  ``cifar-10-binary.tar.gz``; genlab extracts its six ``.bin`` members (and nothing else) from it.

``GENLAB_DATA_MIRROR`` (base URLs separated by spaces or commas) replaces the built-in lists, e.g. for an
institution's own mirror; the checksums are checked all the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoteFile:
    """One file as published: its name at every mirror, the publisher's MD5 of it and, for gz files, the MD5 of
    the decompressed content (which a re-compressed copy of the same data also matches)."""

    name: str
    md5: str
    content_md5: str | None = None


@dataclass(frozen=True)
class DatasetSource:
    """Where one dataset's files come from and where they go.

    ``folder`` is the sub-folder of the data directory the loader reads. When ``members`` is given, the one
    published file is a tar archive and ``members`` maps the archive's member paths to the file names the loader
    reads (extracted into ``folder``; every other member is ignored).
    """

    dataset: str
    folder: str
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    checksums_from: str
    members: dict[str, str] = field(default_factory=dict)

    @property
    def loader_files(self) -> list[str]:
        """The file names the loader reads, in ``folder``."""
        return list(self.members.values()) if self.members else [f.name for f in self.files]


_MNIST = (RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                     "6bbc9ace898e44ae57da46a324031adb"),
          RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                     "a25bea736e30d166cdddb491f175f624"),
          RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
                     "2646ac647ad5339dbf082846283269ea"),
          RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
                     "27ae3e4e09519cfbb04c329615203637"))

_FASHION = (RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                       "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                       "9018921c3c673c538a1fc5bad174d6f9"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                       "8181f5470baa50b63fa0f6fddb340f0a"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                       "15d484375f8d13e6eb1aabb0c3f46965"))

_CIFAR_MEMBERS = {f"cifar-10-batches-bin/{n}": n for n in
                  [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]}

SOURCES: dict[str, DatasetSource] = {s.dataset: s for s in [
    DatasetSource("mnist", "mnist", _MNIST,
                  ("http://yann.lecun.com/exdb/mnist/",  # the official page (often refuses scripts now)
                   "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
                   "https://storage.googleapis.com/cvdf-datasets/mnist/"),  # TensorFlow's mirror
                  "the files as distributed (torchvision's checks); decompressed: the long-published MD5s"),
    DatasetSource("fashion-mnist", "fashion-mnist", _FASHION,
                  ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",  # the README's download links
                   "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"),
                  "the table in zalandoresearch/fashion-mnist's README"),
    DatasetSource("cifar10", "cifar-10-batches-bin",
                  (RemoteFile("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530"),),
                  ("https://www.cs.toronto.edu/~kriz/", "https://cave.cs.toronto.edu/kriz/"),
                  "https://www.cs.toronto.edu/~kriz/cifar.html (binary version)", _CIFAR_MEMBERS),
]}


def mirrors(source: DatasetSource, override: list[str] | None = None) -> list[str]:
    """The base URLs to try, in order: ``override``, else ``$GENLAB_DATA_MIRROR``, else the built-in list."""
    if override:
        chosen = list(override)
    else:
        env = os.environ.get("GENLAB_DATA_MIRROR", "").replace(",", " ").split()
        chosen = env or list(source.mirrors)
    return [m if m.endswith("/") else m + "/" for m in chosen]
