"""Object detection's post-processing as ONNX Runtime's CPU kernels run it, counted from what a run saw.

NonMaxSuppression's work depends on the scores, not only on the shapes: ONNX Runtime
(core/providers/cpu/object_detection/non_max_suppression.cc), for each batch and class, reads every box's score,
pushes those above the score threshold into a priority queue, then pops them best first, checking each against
the boxes kept so far until one overlaps it past the IoU threshold, and stops when the class has its
`max_output_boxes_per_class`. A detector's 8,400 boxes × 80 classes at random scores push half a million
candidates (13-31 ms on one x86 core); a real photograph's push a few hundred (under 1 ms). So the count is
the run's: `nms_operations` replays the kernel's loop on the boxes and scores one run at the model's inputs
produced (`graph.from_onnx` reads them at registration; the summary's "data_work" carries the count to a
coordinator, which runs nothing), exactly up to `REPLAYED_POPS_MAX` pops and extrapolated past it.

RoiAlign's work is its regions' (`roi_align_operations`): per region and output cell, the sampling grid's
bilinear weights once, then per channel an output and four taps a sample. With `sampling_ratio` 0 the grid is
each region's own size over the output's, read from the same run.

Counts are in the scalar loops' unit (`graph.SCALAR_ELEMENTWISE`: about a cycle of one core each); the
constants are `bench/scalar_ops.py`'s timings of ONNX Runtime 1.32's kernels on one core divided by that unit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper

from edgeatlas.protos import onnx_model

# NonMaxSuppression, in operations (bench/scalar_ops.py's detection section: fifteen settings of boxes, classes,
# thresholds and box sizes, timed and fitted; within ×0.77-1.23 where a class has the tens of thousands of
# candidates that make it cost, a single class's few thousand ×1.4-3.5, under 0.1 ms):
NMS_SCORE_OPS = 2.5  # a score read and compared with the threshold, its branch taken at random
NMS_PUSH_OPS = 55  # a candidate pushed into std::priority_queue over a std::deque
NMS_POP_OPS = 14  # a pop's sift-down, per level of the queue's depth
NMS_APART_OPS = 3.5  # an IoU check of boxes apart along the first axis: it returns there
NMS_IOU_OPS = 64  # an IoU check of boxes that meet along it: both axes, the areas, a divide, a compare
REPLAYED_POPS_MAX = 50_000  # past this many pops the rest are extrapolated from those replayed: a 640-pixel
# YOLO-style head's 80 classes replayed whole take 15 s at registration, bounded here 0.9 s, its count 3 % off

# RoiAlign, in operations: per output element (region × channel × cell) a fixed 12 and 5.6 a sample of its
# grid (four taps weighted; 3.6 + 1.6 ns a sample on one x86 core at grids of 1-49), and per region and cell
# each sample's positions and weights, once for every channel.
ROI_OUTPUT_OPS = 12
ROI_TAP_OPS = 5.6
ROI_GRID_OPS = 20
ROI_GRID_MAX = 1 << 16  # an adaptive grid past this many samples a cell is a region no run can mean
OPS_MAX = 1e15  # a count past this (a summary's, which a registrant wrote) is no count

KERNELS = ("NonMaxSuppression", "RoiAlign")


def detection_node(node: onnx.NodeProto) -> bool:
    return node.op_type in KERNELS and node.domain in ("", "ai.onnx")


_attr = onnx_model.attribute


def _data_bound(node: onnx.NodeProto) -> bool:
    """Whether the node's work depends on the values of its inputs (a run must read them)."""
    return node.op_type == "NonMaxSuppression" or int(_attr(node, "sampling_ratio", 0)) <= 0


def read(model: onnx.ModelProto, shapes: dict, given: dict, run) -> dict[str, float]:
    """{first output: operations} of the graph's NonMaxSuppression and RoiAlign nodes whose work depends on
    their inputs' values: `given` (a summary's) where it has a count, else counted at the values `run(tensors)`
    -> {tensor: array} reads (one run at the model's inputs; an empty answer leaves the node uncounted)."""
    counted = {k: float(v) for k, v in given.items()
               if isinstance(k, str) and type(v) in (int, float) and 0 <= v <= OPS_MAX}
    nodes = [n for n in model.graph.node if detection_node(n) and n.output and n.output[0] not in counted and
             _data_bound(n)]
    if not nodes:
        return counted
    wanted = {t for n in nodes for t in (n.input[:5] if n.op_type == "NonMaxSuppression" else n.input[1:2]) if t}
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in wanted}
    values.update(run(sorted(wanted - set(values))))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    for n in nodes:
        ops = _nms(n, values) if n.op_type == "NonMaxSuppression" else \
            _adaptive_roi_align(n, values, shapes, opset)
        if ops is not None and math.isfinite(ops):
            counted[n.output[0]] = float(round(ops))
    return counted


def _nms(node: onnx.NodeProto, values: dict) -> float | None:
    def scalar(i, default):
        t = node.input[i] if len(node.input) > i and node.input[i] else None
        if t is None:
            return default
        v = np.asarray(values.get(t, [])).reshape(-1)
        return v[0] if v.size == 1 else None

    boxes, scores = (values.get(t) for t in node.input[:2])
    most, iou, threshold = scalar(2, 0), scalar(3, 0.0), scalar(4, None)
    if boxes is None or scores is None or most is None or iou is None or \
            (threshold is None and len(node.input) > 4 and node.input[4]):
        return None
    return nms_operations(np.asarray(boxes), np.asarray(scores), int(most), float(iou),
                          None if threshold is None else float(threshold), int(_attr(node, "center_point_box", 0)))


def _adaptive_roi_align(node: onnx.NodeProto, values: dict, shapes: dict, opset: int) -> float | None:
    rois = values.get(node.input[1]) if len(node.input) > 1 else None
    out = shapes.get(node.output[0], (None, 0))[0]
    if rois is None or out is None or len(out) != 4:
        return None
    mode = _attr(node, "coordinate_transformation_mode", b"half_pixel" if opset >= 16 else b"output_half_pixel")
    mode = mode.decode(errors="replace") if isinstance(mode, bytes) else str(mode)
    grid = adaptive_grid(np.asarray(rois), float(_attr(node, "spatial_scale", 1.0)), out[2], out[3],
                         mode == "half_pixel")
    x = shapes.get(node.input[0], (None, 0))[0]
    return roi_align_operations(x, out, 0, grid)


def node_work(node: onnx.NodeProto, ins: list, outs: list, counted: dict) -> float | None:
    """A detection node's operations: its count read from a run (`read`), else (RoiAlign at a fixed sampling
    ratio) from its shapes; None where neither tells."""
    if node.output and node.output[0] in counted:
        return counted[node.output[0]]
    if node.op_type == "RoiAlign" and not _data_bound(node):
        return roi_align_operations(ins[0] if ins else None, outs[0] if outs else None,
                                    int(_attr(node, "sampling_ratio", 0)), None)
    return None


def nms_operations(boxes: np.ndarray, scores: np.ndarray, max_per_class: int, iou_threshold: float,
                   score_threshold: float | None, center_point_box: int = 0) -> float | None:
    """Operations of one NonMaxSuppression at these inputs (boxes [B, N, 4], scores [B, C, N]), replaying ONNX
    Runtime's loop; None where the inputs are not what the operator takes."""
    if boxes.ndim != 3 or scores.ndim != 3 or boxes.shape[2] != 4 or boxes.shape[0] != scores.shape[0] or \
            boxes.shape[1] != scores.shape[2]:
        return None
    batches, classes, n = scores.shape
    ops = float(batches * classes * n * NMS_SCORE_OPS)
    if max_per_class <= 0:
        return float(batches * NMS_SCORE_OPS)  # ONNX Runtime returns before reading a score
    corners = corners_of(boxes.astype(np.float64), center_point_box)
    pops_total = checks_total = candidates = 0.0  # of the classes replayed
    rest = []  # candidates of each class left to extrapolate
    for b in range(batches):
        for c in range(classes):
            s = scores[b, c].astype(np.float64)
            picked = np.flatnonzero(s > score_threshold) if score_threshold is not None else np.arange(n)
            ops += len(picked) * NMS_PUSH_OPS
            if not len(picked):
                continue
            if pops_total >= REPLAYED_POPS_MAX:
                rest.append(len(picked))
                continue
            order = picked[np.argsort(-s[picked], kind="stable")]
            r = replay(corners[b], order, max_per_class, iou_threshold, REPLAYED_POPS_MAX - pops_total)
            # a class stopped at the bound pops on at the rate it kept boxes until it has `most` of them
            pops = r.pops if r.done else \
                min(len(picked), r.pops * max_per_class / len(r.kept) if r.kept else len(picked))
            candidates += len(picked) if r.done else pops
            pops_total += r.pops
            check_ops = r.met * NMS_IOU_OPS + (r.checks - r.met) * NMS_APART_OPS
            checks_total += check_ops
            ops += pops * (NMS_POP_OPS * math.log2(len(picked) + 1) + check_ops / r.pops)
    if rest:
        per_pop = checks_total / max(pops_total, 1.0)
        share = min(1.0, pops_total / max(candidates, 1.0))  # of a class's candidates, popped
        for count in rest:
            pops = min(count, max(1.0, share * count))
            ops += pops * (NMS_POP_OPS * math.log2(count + 1) + per_pop)
    return ops


def corners_of(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """[B, N, 4] as (y1, x1, y2, x2) sorted per axis: ONNX Runtime takes either corner pair, or centres."""
    if center_point_box:
        cx, cy, w, h = (boxes[..., i] for i in range(4))
        return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1)
    y = np.sort(boxes[..., [0, 2]], -1)
    x = np.sort(boxes[..., [1, 3]], -1)
    return np.stack([y[..., 0], x[..., 0], y[..., 1], x[..., 1]], -1)


class Replay(NamedTuple):
    pops: int
    checks: int  # IoU checks
    met: int  # those of them whose boxes meet along the first axis (the others return there)
    kept: list  # the boxes kept, best first
    done: bool = True  # False: stopped at the budget of pops with candidates left


def replay(corners: np.ndarray, order: np.ndarray, most: int, iou_threshold: float,
           budget: float = math.inf) -> Replay:
    """One class as ONNX Runtime runs it: candidates (`order`: indices into `corners`, best first) popped, each
    checked against the kept boxes in the order they were kept until one suppresses it (SuppressByIOU: boxes
    apart along the first axis return there); stops when `most` are kept and another would be, or (not done)
    after `budget` pops."""
    kept = np.empty((min(most, len(order)), 4))
    areas = np.empty(len(kept))
    chosen = []
    k = pops = checks = full = 0
    for i in order:
        if pops >= budget:
            return Replay(pops, checks, full, chosen, done=False)
        pops += 1
        box = corners[i]
        if k:
            iy = np.minimum(kept[:k, 2], box[2]) - np.maximum(kept[:k, 0], box[0])
            ix = np.minimum(kept[:k, 3], box[3]) - np.maximum(kept[:k, 1], box[1])
            inter = np.clip(iy, 0, None) * np.clip(ix, 0, None)
            area = (box[2] - box[0]) * (box[3] - box[1])
            with np.errstate(divide="ignore", invalid="ignore"):
                over = np.flatnonzero((inter > 0) & (area > 0) & (areas[:k] > 0) &
                                      (inter / (area + areas[:k] - inter) > iou_threshold))
            seen = int(over[0]) + 1 if len(over) else k
            checks += seen
            full += int(np.count_nonzero(iy[:seen] > 0))
            if len(over):
                continue
        if k >= most:
            break
        kept[k] = box
        areas[k] = (box[2] - box[0]) * (box[3] - box[1])
        chosen.append(int(i))
        k += 1
    return Replay(pops, checks, full, chosen)


def roi_align_operations(x: list | None, out: list | None, sampling_ratio: int, grid: float | None) -> float | None:
    """Operations of a RoiAlign: X [N, C, H, W], output [R, C, oh, ow]; `grid`: the mean samples a cell where
    the ratio is 0 (adaptive: each region's size over the output's, from a run), else the ratio squared."""
    if x is None or out is None or len(x) != 4 or len(out) != 4 or not all(isinstance(d, int) for d in out):
        return None
    if sampling_ratio <= 0:
        if grid is None or not 0 < grid <= ROI_GRID_MAX:
            return None
    else:
        grid = float(min(sampling_ratio ** 2, ROI_GRID_MAX))
    regions, channels, oh, ow = out
    cells = regions * oh * ow
    return cells * (grid * ROI_GRID_OPS + channels * (ROI_OUTPUT_OPS + grid * ROI_TAP_OPS))


def adaptive_grid(rois: np.ndarray, spatial_scale: float, oh: int, ow: int, half_pixel: bool) -> float | None:
    """The mean sampling grid a RoiAlign with sampling_ratio 0 takes over `rois` [R, 4] (x1, y1, x2, y2):
    ceil(region height / oh) × ceil(region width / ow), each side at least a pixel unless `half_pixel` (the
    output_half_pixel mode, opset 10's only one, stretches a smaller region to a pixel)."""
    if rois.ndim != 2 or rois.shape[1] != 4 or not len(rois) or oh <= 0 or ow <= 0:
        return None
    r = rois.astype(np.float64) * spatial_scale
    h, w = r[:, 3] - r[:, 1], r[:, 2] - r[:, 0]
    if not half_pixel:
        h, w = np.maximum(h, 1.0), np.maximum(w, 1.0)
    grid = np.ceil(h / oh) * np.ceil(w / ow)
    grid = grid[np.isfinite(grid)]
    return float(np.clip(grid, 0, ROI_GRID_MAX).mean()) if len(grid) else None
