"""keras-hub's DeepLabV3 and RetinaNet, unchanged, on `InceptionBackbone`: they learn,
and the segmenter exports with parity.

The synthetic set (`tests/support/segmentation.py`): discs, squares and triangles of
random colours pasted on the flower photos. DeepLabV3 trains on FaceNet's pretrained
Inception-ResNet-v1 with aligned maps at output stride 16; the backbone is frozen, so
its pyramid maps are computed once and the head trains on them.
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import pytest
from support.segmentation import (
    NUM_CLASSES,
    deeplab_segmenter,
    fit_on_cached_maps,
    load_backgrounds,
    make_boxes_set,
    make_shapes_set,
)

from keras_inception.embeddings import preprocess_input as face_preprocess_input
from keras_inception.keras_hub import InceptionBackbone

SIZE = 96
TRAIN, HELD_OUT = 400, 100

@pytest.fixture(scope="module")
def backgrounds(flowers_dir):
    return load_backgrounds(flowers_dir, SIZE)


@pytest.fixture(scope="module")
def trained_segmenter(facenet_ms_celeb, backgrounds):
    """DeepLabV3 on FaceNet's backbone trained on the synthetic set; (segmenter,
    held-out images, held-out masks). Train and held-out sets use other photos."""
    encoder = InceptionBackbone.from_network(
        facenet_ms_celeb, align_feature_maps=True, output_stride=16, image_shape=(SIZE, SIZE, 3))
    keras.utils.set_random_seed(0)
    segmenter = deeplab_segmenter(encoder)
    split = len(backgrounds) * 7 // 8
    images, masks = make_shapes_set(backgrounds[:split], TRAIN, seed=0)
    held_out, held_out_masks = make_shapes_set(backgrounds[split:], HELD_OUT, seed=1)
    fit_on_cached_maps(segmenter, face_preprocess_input(images, "prewhiten"), masks, epochs=6)
    return segmenter, face_preprocess_input(held_out, "prewhiten"), held_out_masks


@pytest.mark.slow
def test_deeplab_learns_the_shapes(trained_segmenter):
    segmenter, images, masks = trained_segmenter
    predicted = np.asarray(segmenter.predict(images, batch_size=16, verbose=0)).argmax(-1)
    assert predicted.shape == masks.shape
    score = keras.metrics.MeanIoU(NUM_CLASSES)
    score.update_state(masks, predicted)
    majority = keras.metrics.MeanIoU(NUM_CLASSES)
    majority.update_state(masks, np.zeros_like(masks))  # everything background
    miou, baseline = float(score.result()), float(majority.result())
    assert miou >= 0.6 and miou >= baseline + 0.2, (miou, baseline)


def relative_l2(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


@pytest.mark.slow
def test_segmenter_exports_with_parity(trained_segmenter, tmp_path):
    """SavedModel and TFLite float32 give the Keras segmenter's logits (relative L2 <= 1e-4)."""
    import tensorflow as tf

    from keras_inception.export import export_saved_model, export_tflite
    from keras_inception.export.runtime import load_interpreter

    segmenter, images, _ = trained_segmenter
    x = images[:2]
    expected = np.asarray(segmenter(x, training=False))
    saved = export_saved_model(segmenter, tmp_path / "segmenter")
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    got = next(iter(serve(tf.constant(x)).values())).numpy()
    assert got.shape == expected.shape and relative_l2(got, expected) <= 1e-4
    path = export_tflite(segmenter, tmp_path / "segmenter.tflite")
    interpreter = load_interpreter(path)
    runner = interpreter.get_signature_runner()
    outputs = [next(iter(runner(**{name: image[None] for name in runner.get_input_details()}).values()))
               for image in x]
    assert relative_l2(np.concatenate(outputs), expected) <= 1e-4


@pytest.mark.slow
def test_retinanet_overfits_a_fixed_batch(backgrounds):
    """RetinaNet on an aligned IR-v1 (levels P3-P5, strides 8-32 as their keys say):
    the loss on one fixed batch of shapes' boxes falls by half in 20 steps."""
    images, boxes = make_boxes_set(backgrounds, 4, seed=2)
    keras.utils.set_random_seed(0)
    encoder = InceptionBackbone("inception_resnet_v1", align_feature_maps=True,
                                image_shape=(SIZE, SIZE, 3))
    encoder.trainable = False
    backbone = keras_hub.models.RetinaNetBackbone(image_encoder=encoder, min_level=3, max_level=5,
                                                  use_p5=False, image_shape=(SIZE, SIZE, 3))
    detector = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=3,
                                                        bounding_box_format="yxyx")
    detector.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = detector.fit(images / 127.5 - 1, boxes, batch_size=4, epochs=20, shuffle=False,
                           verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] <= 0.5 * losses[0], losses
