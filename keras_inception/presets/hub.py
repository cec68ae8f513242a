"""Presets converted from timm checkpoints on the Hugging Face hub.

`load_converted(model, preset, include_top)` fills the caller's model. The first
call downloads the preset's `model.safetensors` with `huggingface_hub.hf_hub_download`
(which honours `HF_HUB_OFFLINE`, `HF_HUB_CACHE` / `HF_HOME` and an already populated
Hugging Face cache) and converts it into the model with the strict timm converter;
`presets.converted` caches and verifies the result.
"""

from __future__ import annotations

import os
import socket
import urllib.parse

import keras

from keras_inception.convert import load_timm_weights
from keras_inception.presets.converted import converted_path, load_or_convert
from keras_inception.presets.fetch import (
    CACHE,
    DOWNLOAD_TIMEOUT,
    DOWNLOADED,
    WeightsDownloadError,
    announce,
    origin_of,
    record_origin,
)
from keras_inception.registry import WeightsPreset

INSTALL_HINT = 'pip install "keras_inception[hub]"'


class MissingDependencyError(ImportError, RuntimeError):
    """An optional dependency (huggingface_hub, safetensors) is not installed."""


def _import_hub():
    try:
        import huggingface_hub
        import safetensors.numpy  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"Pretrained presets converted from timm need the optional packages "
            f"huggingface_hub and safetensors ({e}). Install them with: {INSTALL_HINT}"
        ) from None
    return huggingface_hub


def _unreachable(endpoint: str) -> str | None:
    """Why `endpoint` cannot be reached (DNS, refused, timeout), or None if it can.

    huggingface_hub retries a failed request five times with back-off (about 25 s);
    one TCP connection attempt tells much sooner that there is no network.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # only the proxy knows: let huggingface_hub try
    url = urllib.parse.urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=DOWNLOAD_TIMEOUT):
            return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def download_state_file(entry: WeightsPreset) -> str:
    """Local path of the preset's timm file, from the Hugging Face cache or the hub."""
    hub = _import_hub()
    from huggingface_hub import constants

    request = {"repo_id": entry.hf_repo, "filename": entry.hf_filename, "revision": entry.revision}
    source = f"{constants.ENDPOINT}/{entry.hf_repo} ({entry.hf_filename})"
    try:
        try:
            path = hub.hf_hub_download(**request, local_files_only=True)  # cached: no network
            record_origin(path, CACHE, source)
            return path
        except Exception:
            pass  # not in the cache: download it below
        if not constants.HF_HUB_OFFLINE:
            reason = _unreachable(constants.ENDPOINT)
            if reason is not None:
                raise ConnectionError(f"{constants.ENDPOINT} is unreachable ({reason})")
            announce(f"downloading {entry.hf_filename} of {entry.hf_repo} from the Hugging Face "
                     "hub (once; later uses read the converted file)")
        path = hub.hf_hub_download(**request, etag_timeout=DOWNLOAD_TIMEOUT)
        record_origin(path, DOWNLOADED, source)
        return path
    except Exception as e:
        cache = constants.HF_HUB_CACHE
        folder = "models--" + entry.hf_repo.replace("/", "--")
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        raise WeightsDownloadError(
            f"Could not get {entry.hf_filename} of {entry.hf_repo} (revision "
            f"{entry.revision}) from the Hugging Face hub or its cache{offline}: "
            f"{type(e).__name__}: {e} Without network access, fill the Hugging Face cache "
            f"elsewhere (`hf download {entry.hf_repo} {entry.hf_filename}`) and copy it to "
            f"{os.path.join(cache, folder)}, or convert the file yourself "
            f"(`keras-inception convert --from timm {entry.hf_filename} --model {entry.model} "
            f"--out {os.path.basename(converted_path(entry, True))}`) and pass weights=PATH "
            "(--weights PATH on the command line)."
        ) from None


def load_converted(model: keras.Model, entry: WeightsPreset, include_top: bool,
                   sources: list[str] | None = None) -> str:
    """Fills `model` with the timm preset `entry` (converted once, then cached); returns the
    file. When it is converted now, `sources` gets where the timm file came from."""

    def convert(model: keras.Model) -> str:
        state_file = download_state_file(entry)  # checks the optional dependencies first
        from safetensors.numpy import load_file

        load_timm_weights(model, load_file(state_file))
        if sources is not None:
            origin = origin_of(state_file)
            sources.append(origin.describe() if origin else state_file)
        return f"{entry.hf_repo}/{entry.hf_filename}"

    return load_or_convert(model, entry, include_top, convert)
