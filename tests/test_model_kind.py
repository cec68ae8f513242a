"""What a model is (a classifier or an embedding network) comes from what it is made of:
a built model's metadata, or before building, the registry's `model_kind` (the spec's
head). No module outside the networks' own package and the registry reads a spec flag;
FaceNet is the Inception-ResNet-v1 body plus the embedding head."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import keras
import pytest

import keras_inception as ki
from keras_inception import registry
from keras_inception.metadata import infer_metadata
from keras_inception.models.heads import embedding_head
from keras_inception.models.inception_resnet_v1 import inception_resnet_v1_body

PACKAGE = Path(ki.__file__).resolve().parent
# Where a network's kind may be read off its spec: the networks and the registry itself.
SPEC_OWNERS = (PACKAGE / "models", PACKAGE / "registry.py")
# Calls that return a registry spec.
SPEC_CALLS = {"get_spec", "spec_of", "match_spec"}
# FaceNet's layers at any input size (counted before its builder went through
# `build_network`): 427 with dropout, 426 without; its body (input to `block8_6`) is 422,
# the embedding head adds avg_pool, dropout, bottleneck, bottleneck_bn and embedding.
FACENET_LAYERS = 427
FACENET_BODY_LAYERS = 422
FACENET_WEIGHTS = 490
SIZE = 75


def _is_spec(node: ast.AST) -> bool:
    """An expression that is a registry spec: a name `spec`, or a call of `get_spec`, ..."""
    if isinstance(node, ast.Name):
        return node.id == "spec"
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        return name in SPEC_CALLS
    return False


def flag_reads(source: str) -> list[int]:
    """Lines of `source` that branch on a network's kind through a registry attribute:
    `<anything but self>.classifier`, or `.kind` of a spec."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        if node.attr == "classifier" and not (isinstance(owner, ast.Name) and owner.id == "self"):
            lines.append(node.lineno)
        elif node.attr == "kind" and _is_spec(owner):
            lines.append(node.lineno)
    return lines


def test_flag_reads_finds_what_it_forbids():
    assert flag_reads("if spec.classifier:\n    pass\n") == [1]
    assert flag_reads("x = get_spec(name).classifier\n") == [1]
    assert flag_reads("x = registry.get_spec(name).kind\ny = spec.kind\n") == [1, 2]
    # A layer attribute and a metadata's kind are no registry flags.
    assert flag_reads("y = self.classifier(x)\nz = metadata.kind\n") == []


def test_no_module_outside_the_networks_reads_a_kind_flag():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(path == owner or owner in path.parents for owner in SPEC_OWNERS):
            continue
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line}"
                      for line in flag_reads(path.read_text())]
    assert offenders == [], (
        "ask registry.model_kind(name), or a built model's metadata, instead of reading a "
        f"spec flag: {offenders}")


def test_the_registry_answers_the_kind():
    assert registry.model_kind("facenet") == "embedding"
    for name in ("inception_v4", "inception_resnet_v1", "inception_resnet_v2"):
        assert registry.model_kind(name) == registry.CLASSIFIER
    assert "facenet" not in registry.classifier_names()
    assert "classifier" not in {f.name for f in dataclasses.fields(registry.ModelSpec)}


@pytest.mark.parametrize("name", ["facenet", "inception_resnet_v1"])
def test_built_model_metadata_agrees_with_the_registry(name):
    model = registry.get_spec(name).builder(weights=None, input_shape=(SIZE, SIZE, 3))
    assert infer_metadata(model)[0].kind == registry.model_kind(name)


def _body_plus_head(dropout_rate: float) -> keras.Model:
    inputs = keras.layers.Input((SIZE, SIZE, 3), name="input_layer")
    body = inception_resnet_v1_body(inputs, linear_block8=True)
    assert len(keras.Model(inputs, body).layers) == FACENET_BODY_LAYERS
    return keras.Model(inputs, embedding_head(body, embedding_dim=128, dropout_rate=dropout_rate))


@pytest.mark.parametrize("dropout_rate", [0.2, 0.0])
def test_facenet_is_the_ir_v1_body_plus_the_embedding_head(dropout_rate):
    facenet = ki.FaceNet(weights=None, input_shape=(SIZE, SIZE, 3), dropout_rate=dropout_rate)
    parts = _body_plus_head(dropout_rate)
    names = [layer.name for layer in facenet.layers]
    assert names == [layer.name for layer in parts.layers]
    assert len(names) == FACENET_LAYERS - (dropout_rate == 0.0)
    tail = ["block8_6", "avg_pool", *(["dropout"] if dropout_rate else []), "bottleneck",
            "bottleneck_bn", "embedding"]
    assert names[-len(tail):] == tail
    assert [w.path for w in facenet.weights] == [w.path for w in parts.weights]
    assert [tuple(w.shape) for w in facenet.weights] == [tuple(w.shape) for w in parts.weights]
    assert len(facenet.weights) == FACENET_WEIGHTS
    # The last IR-C block is linear (scale 1.0, no ReLU after it), the embedding float32.
    assert facenet.get_layer("block8_6").get_config()["scale"] == 1.0
    assert "block8_6_ac" not in names and "block8_5_ac" in names
    assert facenet.output.dtype == "float32"


def test_facenet_presets_keep_their_embedding_facts_apart():
    fields = {f.name for f in dataclasses.fields(registry.WeightsPreset)}
    assert not fields & {"embedding_dim", "standardization", "distance_threshold",
                         "threshold_source"}
    spec = registry.get_spec("facenet")
    facts = {p.name: (p.embedding.embedding_dim, p.embedding.standardization, p.classes)
             for p in spec.presets}
    assert facts == {"ms_celeb_1m": (128, "prewhiten", 128), "vggface2": (512, "fixed", 512),
                     "casia_webface": (512, "fixed", 512)}
    keras_file = spec.preset("ms_celeb_1m")
    # Read as before, through the preset.
    assert (keras_file.embedding_dim, keras_file.standardization,
            keras_file.distance_threshold) == (128, "prewhiten", pytest.approx(1.1))
    assert "LFW" in keras_file.threshold_source
    imagenet = registry.get_spec("inception_v4").preset("imagenet")
    assert imagenet.embedding is None and imagenet.embedding_dim is None
    assert imagenet.standardization is None
    # The table of presets keeps them as columns, empty for a classifier's preset.
    rows = {(r["model"], r["name"]): r for r in ki.list_weights(print_table=False)}
    assert "embedding" not in rows["facenet", "vggface2"]
    assert (rows["facenet", "vggface2"]["embedding_dim"], rows["facenet", "vggface2"]["standardization"],
            rows["facenet", "vggface2"]["distance_threshold"]) == (512, "fixed", 1.1)
    assert rows["inception_v4", "imagenet"]["embedding_dim"] is None


def test_callers_with_a_name_ask_the_registry():
    """Training's defaults and refusals, and `predict`'s refusal, by `model_kind`."""
    from keras_inception.cli.core import load_classifier
    from keras_inception.train.config import TrainConfig

    assert TrainConfig(out="x", model="facenet").resolved_weights() == "ms_celeb_1m"
    assert TrainConfig(out="x", model="inception_v4").resolved_weights() == "imagenet"
    with pytest.raises(ValueError, match="FaceNet .* transfer recipe .* recipe='paper'"):
        TrainConfig(out="x", data="x", model="facenet", recipe="paper").validate()
    TrainConfig(out="x", data="x", model="inception_resnet_v1", recipe="paper").validate()
    with pytest.raises(ValueError, match="--model facenet computes face embeddings"):
        load_classifier("facenet", "ms_celeb_1m", None)


def test_keras_hub_classifier_refuses_a_network_without_its_head():
    """FaceNet has no classification head, as a classifier built without its top."""
    # keras-hub is part of `make venv` (the `keras-hub` extra): missing, this fails, never skips.
    from keras_inception.keras_hub import InceptionImageClassifier

    for network in (ki.FaceNet(weights=None, input_shape=(SIZE, SIZE, 3)),
                    ki.InceptionResNetV1(include_top=False, input_shape=(SIZE, SIZE, 3))):
        with pytest.raises(ValueError, match=f"{network.name!r} has no classification head"):
            InceptionImageClassifier.from_network(network)
