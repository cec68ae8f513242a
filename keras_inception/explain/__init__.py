"""Where a model looks: Grad-CAM, Grad-CAM++ and integrated gradients, on the TensorFlow,
JAX and PyTorch backends, for flat and nested models (a fine-tuned `best.keras`, a
builder given `input_tensor`, an ensemble) and FaceNet's embeddings.

    from keras_inception import explain

    maps = explain.grad_cam(model, images)            # (N, H, W) in [0, 1]
    picture = explain.overlay(pixels[0], maps[0])     # uint8 RGB
"""

from __future__ import annotations

from keras_inception._lazy import lazy_exports

_EXPORTS = {
    "grad_cam": "methods",
    "integrated_gradients": "methods",
    "scores": "methods",
    "peak": "methods",
    "METHODS": "methods",
    "overlay": "drawing",
    "jet": "drawing",
    "resolve_layer": "graph",
    "feature_tap_names": "graph",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
