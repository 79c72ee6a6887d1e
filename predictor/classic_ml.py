"""The work of ONNX-ML's operators (domain ai.onnx.ml): scikit-learn, LightGBM and XGBoost models as skl2onnx
and onnxmltools write them, counted as ONNX Runtime's CPU kernels (core/providers/cpu/ml) run them, per row
of their input ([rows, features]).

Their weights are attributes, not initializers: a forest's nodes, a support vector machine's vectors, a linear
model's coefficients. Left uncounted, a 200-tree random forest that ONNX Runtime runs in 13 ms for 1,000 rows
was answered at a microsecond. `graph.from_onnx` asks `work` for each node of this domain.

- A tree ensemble (TreeEnsembleRegressor, TreeEnsembleClassifier, and opset 5's TreeEnsemble) walks each
  tree from its root to a leaf for each row: a node read, a feature read, a compare and a branch that the
  data makes hard to predict, a visit (`TREE_VISIT_OPS`), as many as the leaf is deep; then it adds the
  leaf's weights to the row's scores. How deep a row goes depends on the data, which the model does not
  hold: each tree is charged the mean depth of its leaves. Measured on real data (scikit-learn's digits and
  diabetes sets, 1,000 rows, ONNX Runtime 1.32, one x86 thread), that costs 4.0-7.7 ns a visit for random
  forests, extra trees, gradient boosting, LightGBM and XGBoost alike (`bench/scalar_ops.py` times random
  trees).
- A support vector machine with an RBF kernel is a scalar loop: per row and support vector, each feature's
  difference squared and summed (`SVM_RBF_ELEMENT_OPS`), then an exp (`EXP_OPS`); a classifier then sums,
  per pair of classes, the two classes' kernels times their coefficients. Its other kernels, and a linear
  model (LinearClassifier, LinearRegressor), are one matrix product (MLAS's GEMM): multiply-adds.
- Scaler, Normalizer, Binarizer, Imputer, ZipMap, LabelEncoder, CategoryMapper and OneHotEncoder are loops
  over their elements (`ELEMENT_OPS`); ArrayFeatureExtractor gathers, FeatureVectorizer, DictVectorizer and
  CastMap copy.

Counts are in the scalar loops' unit (`graph.SCALAR_ELEMENTWISE`: about a cycle of one core each).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

DOMAIN = "ai.onnx.ml"
TREES = ("TreeEnsembleRegressor", "TreeEnsembleClassifier", "TreeEnsemble")
SVMS = ("SVMClassifier", "SVMRegressor")
LINEAR = ("LinearClassifier", "LinearRegressor")
TREE_VISIT_OPS = 16
TREE_NODE_BYTES = 32  # ONNX Runtime's TreeNodeElement: feature, threshold, two child pointers, flags
LEAF_WEIGHT_OPS = 6  # a leaf's weight added to its target's score
SVM_RBF_ELEMENT_OPS = 2
EXP_OPS = 6  # std::exp, one element at a time
PAIR_OPS = 2  # a coefficient times a kernel, summed in double
# per element of its input (OneHotEncoder: and one per element of its output, which it zeroes first)
ELEMENT_OPS = {"Scaler": 9, "Normalizer": 9, "Binarizer": 4, "Imputer": 4, "ZipMap": 270, "LabelEncoder": 10,
               "CategoryMapper": 10, "OneHotEncoder": 6}
GATHERS = ("ArrayFeatureExtractor",)
COPIES = ("FeatureVectorizer", "DictVectorizer", "CastMap")
OPS = frozenset(TREES + SVMS + LINEAR + tuple(ELEMENT_OPS) + GATHERS + COPIES)
MAX_TREE_NODES = 50_000_000  # beyond this a forest's shape is not walked (its work is named as not counted)
ID_MAX = (1 << 31) - 1  # ONNX Runtime's node ids are 32-bit


@dataclass(frozen=True)
class Work:
    """What one ONNX-ML node does per query: FLOPs (scalar operations where `scalar`), multiply-adds, the
    bytes of its attribute weights it reads, its attribute parameters, the output columns of the matrix
    product it runs as (0: none), and its category (`graph.CATEGORIES`)."""
    flops: float
    macs: float = 0.0
    scalar: bool = True
    weight_bytes: float = 0.0
    parameters: int = 0
    columns: float = 0.0
    category: str = "elementwise"


def ml_node(node: onnx.NodeProto) -> bool:
    return node.domain == DOMAIN and node.op_type in OPS


def work(node: onnx.NodeProto, x: list | None) -> Work | None:
    """The node's work on an input of shape `x` ([rows, features], or [features] for one row); None where it
    cannot be told (the input's shape unknown, attributes that do not describe a model)."""
    op = node.op_type
    if op in GATHERS:
        return Work(0.0, scalar=False, category="gather")
    if op in COPIES:
        return Work(0.0, scalar=False, category="copy")
    if x is None or any(not isinstance(d, int) or d < 0 for d in x):
        return None
    elements = float(np.prod(x)) if x else 1.0
    features = x[-1] if len(x) >= 1 else 1
    rows = elements / features if features else 0.0
    attrs = {a.name: a for a in node.attribute}
    if op in TREES:
        shape = _forest(attrs)
        if shape is None:
            return None
        visits, leaf_adds, nodes, weights = shape
        read = min(nodes, rows * visits) * TREE_NODE_BYTES
        return Work(rows * (visits * TREE_VISIT_OPS + leaf_adds * LEAF_WEIGHT_OPS), weight_bytes=read,
                    parameters=int(nodes + weights))
    if op in SVMS:
        return _svm(op, attrs, rows, features)
    if op in LINEAR:
        coefficients = _floats(attrs, "coefficients")
        outputs = len(coefficients) / features if features else 0.0
        macs = rows * len(coefficients)
        return Work(2 * macs, macs, scalar=False, weight_bytes=4.0 * len(coefficients),
                    parameters=len(coefficients) + len(_floats(attrs, "intercepts")), columns=outputs,
                    category="matmul")
    ops = elements * ELEMENT_OPS[op]
    if op == "OneHotEncoder":
        categories = len(_ints(attrs, "cats_int64s")) or len(_strings(attrs, "cats_strings"))
        ops += elements * categories
    return Work(ops)


def _svm(op: str, attrs: dict, rows: float, features: int) -> Work:
    kernel = _string(attrs, "kernel_type", "LINEAR")
    vectors = _floats(attrs, "support_vectors")
    coefficients = _floats(attrs, "coefficients")
    count = len(vectors) / features if features else 0.0
    parameters = len(vectors) + len(coefficients)
    if not count:  # liblinear's mode: the coefficients are a linear model's
        macs = rows * len(coefficients)
        return Work(2 * macs, macs, scalar=False, weight_bytes=4.0 * parameters, parameters=parameters,
                    columns=len(coefficients) / features if features else 0.0, category="matmul")
    classes = len(_ints(attrs, "classlabels_ints")) or len(_strings(attrs, "classlabels_strings"))
    pairs = rows * count * (max(classes - 1, 1) if op == "SVMClassifier" else 1) * PAIR_OPS
    if kernel == "RBF":
        ops = rows * count * (features * SVM_RBF_ELEMENT_OPS + EXP_OPS) + pairs
        return Work(ops, weight_bytes=4.0 * parameters, parameters=parameters)
    macs = rows * count * features
    return Work(2 * macs + pairs, macs, scalar=False, weight_bytes=4.0 * parameters, parameters=parameters,
                columns=count, category="matmul")


def _forest(attrs: dict) -> tuple[float, float, int, int] | None:
    """(node visits a row makes over all trees, leaf weights it adds, nodes, leaf weights) of a tree
    ensemble's attributes; None where they do not describe trees."""
    if "tree_roots" in attrs:
        return _forest_v5(attrs)
    tree, ids = _ints(attrs, "nodes_treeids"), _ints(attrs, "nodes_nodeids")
    true, false = _ints(attrs, "nodes_truenodeids"), _ints(attrs, "nodes_falsenodeids")
    modes = attrs.get("nodes_modes")
    n = len(tree)
    if not n or n > MAX_TREE_NODES or modes is None or \
            not (len(ids) == len(true) == len(false) == len(modes.strings) == n) or ids.min() < 0 or ids.max() > ID_MAX:
        return None
    _, tree = np.unique(tree, return_inverse=True)  # 0 .. trees - 1, so that tree × width + node id fits
    leaf = np.array([m == b"LEAF" for m in modes.strings])
    index = _Index(tree, ids)
    children = np.stack([index.find(tree, true), index.find(tree, false)])
    children[:, leaf] = -1
    is_child = np.zeros(n, bool)
    is_child[children[children >= 0]] = True
    roots = np.flatnonzero(~is_child)
    depth, owner = _depths(roots, children, n)
    reached = leaf & (depth >= 0)
    if not reached.any():
        return None
    visits = _mean_per_tree(depth[reached], owner[reached], len(roots))
    weights = len(_ints(attrs, "target_ids") if "target_ids" in attrs else _ints(attrs, "class_ids"))
    return visits, len(roots) * weights / max(int(reached.sum()), 1), n, weights


def _forest_v5(attrs: dict) -> tuple[float, float, int, int] | None:
    """`_forest` of ONNX-ML opset 5's TreeEnsemble: children index the nodes or, where flagged, the leaves."""
    roots = _ints(attrs, "tree_roots")
    true, false = _ints(attrs, "nodes_truenodeids"), _ints(attrs, "nodes_falsenodeids")
    true_leaf, false_leaf = _ints(attrs, "nodes_trueleafs"), _ints(attrs, "nodes_falseleafs")
    n = len(true)
    if not n or n > MAX_TREE_NODES or not (len(false) == len(true_leaf) == len(false_leaf) == n) or \
            not len(roots) or roots.min() < 0 or roots.max() >= n:
        return None
    children = np.stack([np.where(true_leaf != 0, -1, true), np.where(false_leaf != 0, -1, false)])
    children[(children >= n) | (children < -1)] = -1
    depth, tree = _depths(roots, children, n)
    leaf_depths, leaf_trees = [], []
    for flags in (true_leaf, false_leaf):  # a leaf lies one below the node that points at it
        at = (flags != 0) & (depth >= 0) & (tree >= 0)
        leaf_depths.append(depth[at] + 1)
        leaf_trees.append(tree[at])
    depths, owners = np.concatenate(leaf_depths), np.concatenate(leaf_trees)
    if not len(depths):
        return None
    visits = _mean_per_tree(depths, owners, len(roots))
    weights = len(_ints(attrs, "leaf_targetids"))
    return visits, len(roots) * weights / max(len(depths), 1), n, weights


class _Index:
    """(tree id, node id) → the node's position in the attribute arrays, -1 where there is none."""

    def __init__(self, tree: np.ndarray, ids: np.ndarray):
        self.width = int(max(ids.max(), 0)) + 1
        keys = tree * self.width + ids
        self.order = np.argsort(keys, kind="stable")
        self.sorted = keys[self.order]

    def find(self, tree: np.ndarray, ids: np.ndarray) -> np.ndarray:
        keys = tree * self.width + ids
        at = np.minimum(np.searchsorted(self.sorted, keys), len(self.sorted) - 1)
        found = (self.sorted[at] == keys) & (ids >= 0) & (ids < self.width)
        return np.where(found, self.order[at], -1)


def _depths(roots: np.ndarray, children: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(each node's depth below its root, the position in `roots` of that root; -1 for both where it is not
    reached), breadth first from the roots; a node reached twice (a cycle, a child two nodes share) keeps
    its first."""
    depth, owner = np.full(n, -1), np.full(n, -1)
    depth[roots], owner[roots] = 0, np.arange(len(roots))
    frontier = np.asarray(roots)
    for level in range(1, n + 1):
        kids = children[:, frontier]
        parents = np.broadcast_to(frontier, kids.shape)
        fresh = kids >= 0
        kids, parents = kids[fresh], parents[fresh]
        kids, first = np.unique(kids, return_index=True)
        parents = parents[first]
        unseen = depth[kids] < 0
        kids, parents = kids[unseen], parents[unseen]
        if not len(kids):
            break
        depth[kids], owner[kids] = level, owner[parents]
        frontier = kids
    return depth, owner


def _mean_per_tree(depths: np.ndarray, trees: np.ndarray, count: int) -> float:
    """The sum over trees of each tree's mean leaf depth."""
    leaves = np.bincount(trees, minlength=count)
    total = np.bincount(trees, weights=depths, minlength=count)
    return float((total[leaves > 0] / leaves[leaves > 0]).sum())


def _ints(attrs: dict, name: str) -> np.ndarray:
    a = attrs.get(name)
    return np.asarray(a.ints, dtype=np.int64) if a is not None else np.zeros(0, np.int64)


def _floats(attrs: dict, name: str) -> np.ndarray:
    a = attrs[name] if name in attrs else attrs.get(name + "_as_tensor")
    if a is None:
        return np.zeros(0, np.float32)
    if a.HasField("t"):
        return onnx.numpy_helper.to_array(a.t).ravel()
    return np.asarray(a.floats, dtype=np.float32)


def _strings(attrs: dict, name: str) -> list:
    a = attrs.get(name)
    return list(a.strings) if a is not None else []


def _string(attrs: dict, name: str, default: str) -> str:
    a = attrs.get(name)
    return a.s.decode(errors="replace").upper() if a is not None and a.s else default
