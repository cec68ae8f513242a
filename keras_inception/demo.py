"""`make demo`: build the three networks, print their statistics, classify a photo."""

from __future__ import annotations

import time

import numpy as np


def run_demo() -> int:
    import keras_inception as ki
    from keras_inception.analysis import model_stats, stats_table
    from keras_inception.images import load_image, sample_image_path
    from keras_inception.weights import WeightsDownloadError

    builders = [ki.InceptionV4, ki.InceptionResNetV1, ki.InceptionResNetV2]
    models, rows = {}, []
    for builder in builders:
        t0 = time.perf_counter()
        model = builder(weights=None)
        models[model.name] = model
        rows.append(model_stats(model))
        print(f"built {model.name} in {time.perf_counter() - t0:.1f} s")
    print()
    print(stats_table(rows))

    image_path = sample_image_path()
    image = load_image(image_path, 299, crop_pct=0.8975)[None]
    print(f"\nForward pass on {image_path} (1x299x299x3):")
    try:
        model = ki.InceptionResNetV2(weights="imagenet")
        weights_note = "ImageNet weights"
    except (WeightsDownloadError, ValueError) as e:
        print(f"  ImageNet weights unavailable ({str(e).splitlines()[0][:160]}...)")
        print("  -> using random weights: the classes below are meaningless.")
        model, weights_note = models["inception_resnet_v2"], "random weights"
    t0 = time.perf_counter()
    preds = model.predict(ki.preprocess_input(image), verbose=0)
    print(f"  inception_resnet_v2 ({weights_note}): {time.perf_counter() - t0:.2f} s, "
          f"output {preds.shape}, probabilities sum to {float(np.sum(preds)):.4f}")
    for rank, (_, label, score) in enumerate(ki.decode_predictions(preds, top=5)[0], 1):
        print(f"    {rank}. {label:<28s} {score:.4f}")
    return 0
