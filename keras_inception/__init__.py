"""keras_inception: Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2 for Keras 3.

Szegedy, Ioffe, Vanhoucke, Alemi, "Inception-v4, Inception-ResNet and the Impact of
Residual Connections on Learning" (AAAI 2017).

The public names below are imported on first use (PEP 562), so that `import
keras_inception` and the command line's `--help` stay fast and import neither
TensorFlow nor the builders until they are needed. The package's Keras layers are
registered as soon as Keras is imported too, in either order
(`keras_inception._registration`): `keras.saving.load_model` then loads every `.keras`
file the package writes, in safe mode.
"""

from __future__ import annotations

from keras_inception import _registration
from keras_inception._lazy import lazy_exports
from keras_inception.registry import builder_exports

__version__ = "0.2.0"

# public name -> module that defines it; the builders (InceptionV4, ...) from the
# registry's BUILTIN_MODELS, which imports no Keras
_EXPORTS = {
    **builder_exports(),
    "get_builder": "keras_inception.models",
    "model_names": "keras_inception.registry",
    "get_spec": "keras_inception.registry",
    "feature_extractor": "keras_inception.features",
    "feature_info": "keras_inception.features",
    "preprocess_input": "keras_inception.preprocessing",
    "decode_predictions": "keras_inception.preprocessing",
    "list_weights": "keras_inception.presets",
    "load_model": "keras_inception.saving",
}
_SUBMODULES = (
    "apps", "cli", "convert", "embeddings", "explain", "export", "features", "files", "layers",
    "models", "preprocessing", "presets", "registry", "saving", "train",
)
# old submodule name -> new one (README, "Changes")
_MOVED = {"facenet": "embeddings"}

__all__ = sorted([*_EXPORTS, "layers"])


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES, _MOVED)

_registration.install()
