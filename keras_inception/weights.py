"""Registry of pretrained weights, download with hash check, cache, and loading.

The registry is plain data (`PRESETS`) so that tests and users can point an entry at
another URL (a mirror, or a loopback server in tests).  Downloads go through
`keras.utils.get_file` into a private staging folder inside the cache and are moved
into place only once their hash has been verified, so the cache never holds a
partial or corrupt file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import keras

KERAS_RELEASE_BASE = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_resnet_v2/"
)
# Seconds without an answer before a download is abandoned (connect and each read).
DOWNLOAD_TIMEOUT = 20.0


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: where it comes from and its expected hash."""

    url: str
    fname: str
    file_hash: str
    hash_algorithm: str = "md5"


@dataclasses.dataclass(frozen=True)
class WeightsPreset:
    """A set of pretrained weights for one architecture."""

    model: str
    name: str
    source: str
    description: str
    license: str
    top: RemoteFile | None = None
    notop: RemoteFile | None = None
    revision: str | None = None
    # timm presets: converted from this Hugging Face hub file (see keras_inception.hub).
    hf_repo: str | None = None
    hf_filename: str = "model.safetensors"
    input_size: int = 299
    classes: int = 1000
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    preprocessing: str = "tf: x / 127.5 - 1 (mean = std = 0.5)"

    def file_for(self, include_top: bool) -> RemoteFile:
        remote = self.top if include_top else self.notop
        if remote is None:
            raise ValueError(
                f"Preset {self.model}/{self.name} has no file for include_top={include_top}."
            )
        return remote


PRESETS: dict[tuple[str, str], WeightsPreset] = {
    ("inception_resnet_v2", "imagenet"): WeightsPreset(
        model="inception_resnet_v2",
        name="imagenet",
        source="keras.applications release (TF-slim inception_resnet_v2_2016_08_30)",
        description="ImageNet-1k, 80.4% top-1 (TF-slim)",
        license="Apache-2.0",
        top=RemoteFile(
            KERAS_RELEASE_BASE + "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
            "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
            "e693bd0210a403b3192acc6073ad2e96",
        ),
        notop=RemoteFile(
            KERAS_RELEASE_BASE + "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "d19885ff4a710c122648d3b5c3b684e4",
        ),
        crop_pct=0.8975,
    ),
    ("inception_v4", "imagenet"): WeightsPreset(
        model="inception_v4",
        name="imagenet",
        source="timm inception_v4.tf_in1k (TF-slim inception_v4_2016_09_09), converted",
        description="ImageNet-1k, 80.1% top-1 (timm), 80.2% (TF-slim)",
        license="Apache-2.0",
        hf_repo="timm/inception_v4.tf_in1k",
        revision="main",
        crop_pct=0.875,
    ),
    ("inception_resnet_v2", "imagenet_ens_adv"): WeightsPreset(
        model="inception_resnet_v2",
        name="imagenet_ens_adv",
        source=(
            "timm inception_resnet_v2.tf_ens_adv_in1k (TF ens_adv_inception_resnet_v2_2017_08_18, "
            "ensemble adversarial training), converted"
        ),
        description="ImageNet-1k, ensemble adversarially trained (Tramer et al. 2018)",
        license="Apache-2.0",
        hf_repo="timm/inception_resnet_v2.tf_ens_adv_in1k",
        revision="main",
        crop_pct=0.8975,
    ),
}

# Names that are presets for some architecture; asking for one elsewhere gets a reason.
KNOWN_PRESETS = ("imagenet", "imagenet_ens_adv")

_UNAVAILABLE = {
    "inception_resnet_v1": (
        "No public ImageNet weights exist for Inception-ResNet-v1 (the paper released none; "
        "facenet's are face-recognition weights)."
    ),
}


def preset_names(model_name: str) -> list[str]:
    return [name for (model, name) in PRESETS if model == model_name]


def get_preset(model_name: str, name: str) -> WeightsPreset:
    try:
        return PRESETS[(model_name, name)]
    except KeyError:
        raise ValueError(unavailable_reason(model_name, name)) from None


def unavailable_reason(model_name: str, name: str) -> str:
    reason = _UNAVAILABLE.get(model_name)
    if reason is not None and name == "imagenet":
        return reason
    return f"There is no {name!r} preset for {model_name}."


def cache_dir() -> str:
    """Where downloaded weights live: $KERAS_INCEPTION_CACHE, else Keras' models cache.

    The default is the folder keras.applications uses, so a file it already
    downloaded is found and not fetched again.
    """
    env = os.environ.get("KERAS_INCEPTION_CACHE")
    if env:
        return os.path.expanduser(env)
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(keras_home, "models")


def file_hash(path: str | os.PathLike, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # get_file uses urlretrieve, which has no timeout argument: bound it here so
    # that an unreachable host fails in seconds instead of hanging.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


class WeightsDownloadError(RuntimeError):
    """Raised when pretrained weights can be neither found in the cache nor downloaded."""


def download(remote: RemoteFile, directory: str | None = None) -> str:
    """Returns the local path of `remote`, downloading and verifying it if needed."""
    directory = directory or cache_dir()
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, remote.fname)
    if os.path.isfile(target):
        if file_hash(target, remote.hash_algorithm) == remote.file_hash:
            return target
        os.remove(target)  # stale or corrupt: fetch again

    staging = tempfile.mkdtemp(prefix=".partial-", dir=directory)
    try:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT):
                fetched = keras.utils.get_file(
                    remote.fname,
                    remote.url,
                    file_hash=remote.file_hash,
                    hash_algorithm=remote.hash_algorithm,
                    cache_dir=staging,
                    cache_subdir="",
                )
        except ValueError as e:  # get_file's hash mismatch
            raise ValueError(
                f"Refusing {remote.url}: its {remote.hash_algorithm} hash does not match the "
                f"registry ({remote.file_hash}). Nothing was kept in the cache."
            ) from e
        except Exception as e:
            raise WeightsDownloadError(
                f"Could not download pretrained weights from {remote.url} ({e}). "
                f"Without network access, download the file elsewhere and place it at "
                f"{target} (its {remote.hash_algorithm} must be {remote.file_hash}), "
                "or pass weights=PATH to a local weights file."
            ) from None
        # Re-check: the file must be complete before it becomes visible in the cache.
        if file_hash(fetched, remote.hash_algorithm) != remote.file_hash:
            raise ValueError(f"Refusing {remote.url}: hash mismatch after download.")
        os.replace(fetched, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def fetch_weights(model_name: str, preset: str, include_top: bool) -> str:
    """Local path of a preset's weights file (downloaded or converted once, then cached)."""
    entry = get_preset(model_name, preset)
    if entry.top is not None or entry.notop is not None:
        return download(entry.file_for(include_top))
    from keras_inception import hub  # timm presets: converted from the Hugging Face hub

    return hub.fetch_converted(entry, include_top=include_top)


def load_weights_file(model: keras.Model, path: str | os.PathLike) -> None:
    """Loads `.weights.h5`, legacy `.h5` (keras.applications layout) or `.keras` weights."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path!r}.")
    try:
        model.load_weights(path)
    except ValueError as e:
        raise ValueError(
            f"Could not load weights from {path!r} into model {model.name!r}: {e}"
        ) from e


def list_weights(print_table: bool = True) -> list[dict[str, Any]]:
    """The table of pretrained presets (source, license, input size, crop, ...)."""
    rows = []
    for entry in PRESETS.values():
        row = dataclasses.asdict(entry)
        for key in ("top", "notop"):
            row[key] = row[key]["url"] if row[key] else None
        rows.append(row)
    if print_table:
        columns = ["model", "name", "source", "revision", "license", "input_size", "crop_pct",
                   "interpolation", "preprocessing"]
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
        print("  ".join(c.ljust(widths[c]) for c in columns))
        for r in rows:
            print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))
    return rows
