"""Object detection's post-processing counted from a run (predictor/detection.py), checked against ONNX Runtime."""

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeatlas.coordinator.predictions import graph_of
from edgeatlas.predictor import detection
from edgeatlas.predictor.graph import from_onnx, onnx_summary


def _boxes(rng, n, low=5, high=100, batches=1):
    corner = rng.uniform(0, 640, (batches, n, 2))
    return np.concatenate([corner, corner + rng.uniform(low, high, (batches, n, 2))], -1).astype(np.float32)


def _nms_model(batches, n, classes, most, iou, threshold, center=0):
    """boxes and scores as the graph's inputs; the limits as initializers (a threshold of None: no input)."""
    inits = [numpy_helper.from_array(np.array([most], np.int64), "most"),
             numpy_helper.from_array(np.array([iou], np.float32), "iou")]
    names = ["boxes", "scores", "most", "iou"]
    if threshold is not None:
        inits.append(numpy_helper.from_array(np.array([threshold], np.float32), "threshold"))
        names.append("threshold")
    graph = helper.make_graph(
        [helper.make_node("NonMaxSuppression", names, ["kept"], center_point_box=center)], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batches, n, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batches, classes, n])],
        [helper.make_tensor_value_info("kept", TensorProto.INT64, [None, 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("batches,n,classes,most,iou,threshold,center", [
    (1, 2000, 5, 50, 0.5, 0.3, 0), (2, 500, 3, 1000, 0.3, None, 0), (1, 3000, 2, 20, 0.7, 0.1, 1),
    (1, 400, 4, 400, 0.0, 0.5, 0)])
def test_the_replay_keeps_what_onnx_runtime_keeps(batches, n, classes, most, iou, threshold, center):
    rng = np.random.default_rng(n)
    boxes = _boxes(rng, n, batches=batches)
    if center:  # centres and sides
        boxes = np.concatenate([boxes[..., :2], boxes[..., 2:] - boxes[..., :2]], -1)
    scores = rng.uniform(0, 1, (batches, classes, n)).astype(np.float32)
    kept = ort.InferenceSession(_nms_model(batches, n, classes, most, iou, threshold, center).SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"boxes": boxes, "scores": scores})[0]
    corners = detection.corners_of(boxes.astype(np.float64), center)
    for b in range(batches):
        for c in range(classes):
            s = scores[b, c].astype(np.float64)
            picked = np.flatnonzero(s > threshold) if threshold is not None else np.arange(n)
            order = picked[np.argsort(-s[picked], kind="stable")]
            ours = detection.replay(corners[b], order, most, iou)
            theirs = kept[(kept[:, 0] == b) & (kept[:, 1] == c), 2].tolist()
            assert ours.kept == theirs
            assert len(theirs) <= ours.pops <= len(order) and ours.met <= ours.checks


def test_nms_operations_counted_by_hand():
    # one class: A best; B over A (checked, meets A along the first axis, suppressed); C apart from A along it
    # (checked, returns there, kept). 3 scores, 3 pushes, 3 pops from a queue of 3 (log2 4 = 2 levels each)
    boxes = np.array([[[0, 0, 10, 10], [1, 1, 10, 10], [50, 0, 60, 10]]], np.float32)
    scores = np.array([[[0.9, 0.8, 0.7]]], np.float32)
    d = detection
    want = 3 * d.NMS_SCORE_OPS + 3 * d.NMS_PUSH_OPS + 3 * 2 * d.NMS_POP_OPS + d.NMS_IOU_OPS + d.NMS_APART_OPS
    assert d.nms_operations(boxes, scores, 10, 0.5, None) == pytest.approx(want)
    # max 1 kept: C is popped, passes, and ends the loop there, so the same checks
    assert d.nms_operations(boxes, scores, 1, 0.5, None) == pytest.approx(want)
    # a threshold that leaves A alone: one push, one pop, no check
    alone = 3 * d.NMS_SCORE_OPS + d.NMS_PUSH_OPS + d.NMS_POP_OPS
    assert d.nms_operations(boxes, scores, 10, 0.5, 0.85) == pytest.approx(alone)
    assert d.nms_operations(boxes, scores[:, :, :2], 10, 0.5, None) is None  # boxes and scores disagree
    assert d.nms_operations(boxes, scores, 0, 0.5, None) < alone  # ONNX Runtime returns before reading


def test_pops_past_the_replay_bound_are_extrapolated(monkeypatch):
    rng = np.random.default_rng(3)
    boxes, scores = _boxes(rng, 3000), rng.uniform(0, 1, (1, 12, 3000)).astype(np.float32)
    full = detection.nms_operations(boxes, scores, 100, 0.5, 0.2)
    monkeypatch.setattr(detection, "REPLAYED_POPS_MAX", 250)
    bounded = detection.nms_operations(boxes, scores, 100, 0.5, 0.2)
    assert bounded != full and 0.8 < bounded / full < 1.25


def test_a_graph_counts_nms_at_its_run_and_its_summary_carries_the_count():
    rng = np.random.default_rng(0)
    model = _nms_model(1, 2000, 20, 100, 0.45, 0.25)
    feeds = {"boxes": _boxes(rng, 2000), "scores": rng.uniform(0, 1, (1, 20, 2000)).astype(np.float32)}
    want = detection.nms_operations(feeds["boxes"], feeds["scores"], 100, 0.45, 0.25)
    ran = from_onnx(model, feeds=feeds)
    assert not ran.uncounted and ran.flops.sum() == pytest.approx(want, rel=1e-6)
    assert ran.lanes[0, 0] == pytest.approx(0.5)  # charged as a scalar loop
    assert from_onnx(model).uncounted == {"NonMaxSuppression": 1}  # no run: named, not guessed
    summary = onnx_summary(model, feeds=feeds)
    assert summary["data_work"] == {"kept": pytest.approx(want, abs=1)} and not summary["uncounted"]
    # the coordinator runs nothing: the summary's count is the graph's
    coordinated = graph_of(model, "nms", summary_json=json.dumps(summary))
    assert coordinated.flops.sum() == pytest.approx(want, abs=1) and not coordinated.uncounted
    for hostile in (-5, 1e30, "many", True, None, [3]):
        bad = json.dumps({**summary, "data_work": {"kept": hostile}})
        assert graph_of(model, "nms", summary_json=bad).uncounted == {"NonMaxSuppression": 1}
    assert graph_of(model, "nms", summary_json=json.dumps({**summary, "data_work": [1, 2]})).uncounted


def _roi_model(opset, ratio, rois=None, mode=None, out=2, channels=8):
    attrs = {"output_height": out, "output_width": out, "sampling_ratio": ratio, "spatial_scale": 1.0}
    if mode:
        attrs["coordinate_transformation_mode"] = mode
    inits = [numpy_helper.from_array(np.zeros(len(rois), np.int64), "batch")] if rois is not None else []
    if rois is not None:
        inits.append(numpy_helper.from_array(np.asarray(rois, np.float32), "rois"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 32, 32])]
    if rois is None:
        inputs += [helper.make_tensor_value_info("rois", TensorProto.FLOAT, [5, 4]),
                   helper.make_tensor_value_info("batch", TensorProto.INT64, [5])]
    graph = helper.make_graph([helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], **attrs)], "roi", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def test_roi_align_counted_from_its_shapes_or_its_regions():
    d = detection
    # a fixed ratio: no run needed; 5 regions × 2×2 cells, 3×3 samples each
    fixed = from_onnx(_roi_model(16, 3))
    cells, grid, channels = 5 * 4, 9, 8
    assert fixed.flops.sum() == pytest.approx(cells * (grid * d.ROI_GRID_OPS + channels * (d.ROI_OUTPUT_OPS +
                                                                                         grid * d.ROI_TAP_OPS)))
    # adaptive: each region's size over the output's, from its values (here constants: read without a run)
    rois = [[0, 0, 4, 8], [2, 2, 10, 4]]  # x1 y1 x2 y2: 8 high × 4 wide → 4 × 2 samples; 2 × 8 → 1 × 4
    adaptive = from_onnx(_roi_model(16, 0, rois))
    assert adaptive.flops.sum() == pytest.approx(2 * 4 * (6 * d.ROI_GRID_OPS + channels * (d.ROI_OUTPUT_OPS +
                                                                                          6 * d.ROI_TAP_OPS)), abs=1)
    # opset 10's default mode takes a region of at least a pixel: a 0.2-pixel region samples once, not never
    tiny = [[1, 1, 1.2, 1.2]]
    assert from_onnx(_roi_model(10, 0, tiny)).flops.sum() > 0
    assert from_onnx(_roi_model(16, 0, tiny, mode="output_half_pixel")).flops.sum() == \
        pytest.approx(from_onnx(_roi_model(10, 0, tiny)).flops.sum())
    # regions given at run time: counted from the run, named where there is none
    open_model = _roi_model(16, 0)
    assert from_onnx(open_model).uncounted == {"RoiAlign": 1}
    rng = np.random.default_rng(1)
    corner = rng.integers(0, 20, (5, 2))  # whole pixels: a side of exactly 6
    feeds = {"x": rng.standard_normal((1, 8, 32, 32)).astype(np.float32), "batch": np.zeros(5, np.int64),
             "rois": np.concatenate([corner, corner + 6], 1).astype(np.float32)}  # 6 × 6 → 3 × 3 samples
    ran = from_onnx(open_model, feeds=feeds)
    assert not ran.uncounted and ran.flops.sum() == pytest.approx(fixed.flops.sum(), abs=1)
    ort.InferenceSession(open_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_adaptive_grid_refuses_what_is_no_region():
    assert detection.adaptive_grid(np.zeros((0, 4)), 1.0, 7, 7, True) is None
    assert detection.adaptive_grid(np.zeros((3, 5)), 1.0, 7, 7, True) is None
    huge = detection.adaptive_grid(np.array([[0, 0, 1e30, 1e30]]), 1.0, 1, 1, True)
    assert huge == detection.ROI_GRID_MAX  # clipped: no region takes more than the bound
    assert detection.roi_align_operations([1, 8, 32, 32], [1, 8, 2, 2], 0, math.inf) is None
    assert detection.roi_align_operations([1, 8, 32, 32], [1, 8, 2, 2], 0, None) is None


def test_a_detector_whose_nms_cannot_run_stays_named():
    model = _nms_model(1, 100, 2, 10, 0.5, 0.2)
    wrong = {"boxes": np.zeros((1, 100, 4), np.float32), "scores": np.zeros((1, 2, 99), np.float32)}
    assert from_onnx(model, feeds=wrong).uncounted == {"NonMaxSuppression": 1}
    onnx.checker.check_model(model)


def test_one_class_past_the_replay_bound_is_extrapolated_not_replayed(monkeypatch):
    # a hostile class: every box the same, so each of its candidates is popped and suppressed at one check
    boxes = np.tile(np.array([[[0, 0, 10, 10]]], np.float32), (1, 5000, 1))
    scores = np.random.default_rng(0).uniform(0.5, 1, (1, 1, 5000)).astype(np.float32)
    full = detection.nms_operations(boxes, scores, 5000, 0.5, None)
    popped = []
    replay = detection.replay

    def counted(*args, **kw):
        popped.append(replay(*args, **kw).pops)
        return replay(*args, **kw)

    monkeypatch.setattr(detection, "REPLAYED_POPS_MAX", 100)
    monkeypatch.setattr(detection, "replay", counted)
    bounded = detection.nms_operations(boxes, scores, 5000, 0.5, None)
    assert popped == [100] and bounded == pytest.approx(full, rel=0.01)


def test_attributes_of_the_wrong_type_leave_the_count_to_its_defaults():
    # a hostile file: a string where RoiAlign's sampling ratio or NMS's box format belongs. ONNX Runtime refuses
    # to load it; the counter neither fails nor reads a number from it
    node = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], sampling_ratio="two", spatial_scale="big",
                            output_height=2, output_width=2)
    assert detection._attr(node, "sampling_ratio", 0) == 0 and detection._attr(node, "spatial_scale", 1.0) == 1.0
    assert detection._data_bound(node)  # ratio 0: adaptive, read from a run
    nms = helper.make_node("NonMaxSuppression", ["b", "s"], ["k"], center_point_box="yes")
    assert detection._attr(nms, "center_point_box", 0) == 0
