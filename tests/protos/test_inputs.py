"""The input spec: parsing what a user types, resolving it against what a model declares, the values fed."""

import json

import numpy as np
import pytest

from edgeatlas.protos import inputs
from edgeatlas.protos.errors import InvalidInput
from edgeatlas.protos.inputs import BATCH, InputSpec, ModelInput, request_from_flags, resolve

IMAGE = ModelInput("x", "float32", ("N", 3, "height", "width"))
TOKENS = ModelInput("ids", "int64", ("batch", "seq"), vocab=1000)


def test_a_dynamic_dimension_without_a_size_is_refused_naming_it_and_the_flag():
    with pytest.raises(InvalidInput) as err:
        resolve([IMAGE])
    assert str(err.value) == ("input x: dimension 2 ('height') is dynamic and no size was given; "
                              "set it with --dim height=N or --input x=batchx3xNxN")


def test_an_unnamed_dynamic_dimension_points_at_the_whole_shape():
    with pytest.raises(InvalidInput, match=r"dimension 1 is dynamic .* --input state=2xNx128"):
        resolve([ModelInput("state", "float32", (2, None, 128))], request_from_flags(dims=[]))


def test_axis_0_is_the_batch_and_named_dims_take_their_sizes():
    specs = resolve([IMAGE, TOKENS], request_from_flags(dims=["height=640", "width=480", "seq=128"]))
    assert specs[0].shape == (BATCH, 3, 640, 480) and specs[0].source == "normal"
    assert specs[1].shape == (BATCH, 128) and specs[1].source == "tokens:1000"
    assert [s.batch_axis for s in specs] == [0, 0]


def test_a_dimension_sharing_the_batch_name_is_the_batch_elsewhere_too():
    state = ModelInput("state", "float32", (2, "batch", 128))
    specs = resolve([TOKENS, state], request_from_flags(dims=["seq=16"]))
    assert specs[1].shape == (2, BATCH, 128)
    arrays = inputs.feeds(specs, batch=3)
    assert arrays["state"].shape == (2, 3, 128) and arrays["ids"].shape == (3, 16)


def test_fixing_the_batch_dim_leaves_a_model_without_batch_axis_that_refuses_batch_2():
    specs = resolve([TOKENS], request_from_flags(dims=["batch=1", "seq=8"]))
    assert specs[0].shape == (1, 8)
    inputs.check_batch(specs, 1)
    with pytest.raises(InvalidInput, match="has no batch dimension"):
        inputs.check_batch(specs, 2)


def test_a_given_shape_must_keep_the_models_fixed_dimensions_and_rank():
    with pytest.raises(InvalidInput, match="dimension 1 is fixed at 3 in the model, not 4"):
        resolve([IMAGE], request_from_flags(["x=1x4x32x32"]))
    with pytest.raises(InvalidInput, match="has 4 dimensions"):
        resolve([IMAGE], request_from_flags(["x=1x3x32"]))
    with pytest.raises(InvalidInput, match="named 'H'; give its size with --dim H=N"):
        resolve([IMAGE], request_from_flags(["x=batchx3xHxH"]))
    specs = resolve([IMAGE], request_from_flags(["x=batchx3xHxH"], dims=["H=224"]))
    assert specs[0].shape == (BATCH, 3, 224, 224)


def test_an_integer_input_without_a_known_vocabulary_needs_a_value_source():
    sr = ModelInput("sr", "int64", ())
    with pytest.raises(InvalidInput) as err:
        resolve([sr])
    assert "input sr (int64, scalar) has no value source" in str(err.value) and "--values sr=" in str(err.value)
    (spec,) = resolve([sr], request_from_flags(values=["sr=fixed:16000"]))
    assert inputs.feeds([spec])["sr"].item() == 16000 and inputs.feeds([spec])["sr"].dtype == np.int64


def test_the_featurizer_feeds_zeros_where_values_say_nothing_of_shapes_and_ones_to_a_mask():
    """Shapes alone matter to the predictor's run: an integer input it is not told of gets zeros, but one
    named a mask gets ones, since a mask of zeros masks every position (an int4 Llama's GroupQueryAttention
    refused to run at the sequence length -1 it reads from it). A source given still wins."""
    mask, ids = ModelInput("attention_mask", "int64", (1, 8)), ModelInput("position_ids", "int64", (1, 8))
    flag = ModelInput("Padding_Mask", "bool", (1, 8))
    specs = resolve([mask, ids, flag], values_needed=False)
    feeds = inputs.feeds(specs)
    assert feeds["attention_mask"].tolist() == [[1] * 8] and feeds["position_ids"].tolist() == [[0] * 8]
    assert feeds["Padding_Mask"].all()
    (given,) = resolve([mask], request_from_flags(values=["attention_mask=fixed:0"]), values_needed=False)
    assert not inputs.feeds([given])["attention_mask"].any()


@pytest.mark.parametrize("flag, message", [
    (["--input", "y=1x2"], "the model has no input 'y'"),
    (["--dim", "depth=3"], "no dimension named 'depth'"),
    (["--values", "x=gauss"], "unknown value source"),
    (["--values", "x=uniform:3:1"], "needs LO < HI"),
    (["--values", "x=tokens:0"], "tokens needs a vocabulary size"),
    (["--values", "x=int:0.5:2"], "whole numbers"),
    (["--input", "x=1x3x0x2"], "outside 1..16777216"),
    (["--input", "x=1x3x-2x2"], "is not a shape"),
    (["--input", "x"], "expected NAME=VALUE"),
    (["--dim", "height=big"], "a whole number"),
    (["--input", "x=1x3x65536x65536"], "the limit is 1024 MiB"),
])
def test_bad_flags_are_one_line_each(flag, message):
    args = {"--input": [], "--dim": [], "--values": []}
    args[flag[0]].append(flag[1])
    with pytest.raises(InvalidInput, match=message):
        request = request_from_flags(args["--input"], args["--dim"], args["--values"])
        resolve([IMAGE], request if request.dims or request.shapes.get("x") else
                request_from_flags(args["--input"] or ["x=batchx3x8x8"], args["--dim"], args["--values"]))


def test_normal_values_are_refused_for_an_integer_input():
    with pytest.raises(InvalidInput, match="normal values are for floating-point inputs"):
        resolve([TOKENS], request_from_flags(dims=["seq=4"], values=["ids=normal"]))


def test_the_same_seed_gives_the_same_values_and_batch_tiles_along_the_batch_axis():
    specs = resolve([IMAGE], request_from_flags(["x=batchx3x4x4"], values=["x=uniform:0:255"]))
    a, b = inputs.feeds(specs, 1, seed=7), inputs.feeds(specs, 1, seed=7)
    assert np.array_equal(a["x"], b["x"]) and 0 <= a["x"].min() and a["x"].max() < 255
    four = inputs.feeds(specs, 4, seed=7)["x"]
    assert four.shape == (4, 3, 4, 4) and all(np.array_equal(four[i], a["x"][0]) for i in range(4))


def test_a_sample_file_fills_the_input_and_its_shape_is_checked(tmp_path):
    sample = np.arange(3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)
    np.save(tmp_path / "img.npy", sample)
    request = request_from_flags(["x=batchx3x8x8"], values=[f"x=file:{tmp_path / 'img.npy'}"])
    (spec,) = resolve([IMAGE], request)
    assert spec.source == "sample" and spec.shape == (BATCH, 3, 8, 8)
    fed = inputs.feeds([spec], 2, samples=request.samples)["x"]
    assert fed.shape == (2, 3, 8, 8) and np.array_equal(fed[1], sample)
    with pytest.raises(InvalidInput, match=r"sample's shape \(3, 8, 8\) does not fit"):
        resolve([IMAGE], request_from_flags(["x=batchx3x4x4"], values=[f"x=file:{tmp_path / 'img.npy'}"]))
    (tmp_path / "pickle.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, "
                                          b"'shape': (1,), }" + b" " * 60 + b"\n")
    with pytest.raises(InvalidInput, match="not a readable .npy array"):
        request_from_flags(values=[f"x=file:{tmp_path / 'pickle.npy'}"])
    with pytest.raises(InvalidInput, match="one .npy array"):
        request_from_flags(values=[f"x=file:{tmp_path / 'img.png'}"])


def test_feedback_names_an_output_of_the_model():
    state = ModelInput("h", "float32", (1, 1, 64))
    with pytest.raises(InvalidInput, match="has no output 'hN'"):
        resolve([state], request_from_flags(values=["h=feedback:hN"]), outputs=["y", "h_out"])
    (spec,) = resolve([state], request_from_flags(values=["h=feedback:h_out"]), outputs=["y", "h_out"])
    assert inputs.feedback_pairs([spec]) == [("h", "h_out")]
    assert not inputs.feeds([spec])["h"].any()  # the state starts at zeros


def test_the_wire_form_round_trips_and_a_hostile_one_is_refused():
    specs = resolve([IMAGE, TOKENS], request_from_flags(dims=["height=8", "width=8", "seq=4"]))
    assert inputs.from_json(inputs.to_json(specs)) == specs
    assert inputs.from_json("") == ()
    hostile = [
        "[" * 10_000,
        json.dumps([{"name": "x", "dtype": "float32", "shape": [1 << 20, 1 << 20], "source": "normal"}]),
        json.dumps([{"name": "x", "dtype": "object", "shape": [1], "source": "normal"}]),
        json.dumps([{"name": "x", "dtype": "float32", "shape": [BATCH, BATCH], "source": "normal"}]),
        json.dumps([{"name": "x", "dtype": "float32", "shape": [1], "source": "normal", "extra": 1}]),
        json.dumps([{"name": "x", "dtype": "float32", "shape": [1], "source": "exec:rm"}]),
        json.dumps([{"name": "x", "dtype": "float32", "shape": [True], "source": "normal"}]),
        json.dumps([{"name": "x", "dtype": "float32", "shape": [1], "source": "normal"}] * 2),
        json.dumps([{"name": str(i), "dtype": "float32", "shape": [1], "source": "normal"} for i in range(65)]),
        json.dumps({"x": 1}),
    ]
    for text in hostile:
        with pytest.raises(InvalidInput):
            inputs.from_json(text)


def test_a_spec_from_elsewhere_is_checked_against_the_model():
    good = (InputSpec("x", "float32", (BATCH, 3, 8, 8)),)
    inputs.check_against([IMAGE], good)
    for bad, message in [((InputSpec("x", "float32", (BATCH, 4, 8, 8)),), "dimension 1 is 3 in the model"),
                         ((InputSpec("x", "float16", (BATCH, 3, 8, 8)),), "the spec says float16"),
                         ((), "nothing for input x"),
                         (good + (InputSpec("y", "float32", (1,)),), "names 'y'")]:
        with pytest.raises(InvalidInput, match=message):
            inputs.check_against([IMAGE], bad)
