"""ONNX-ML's operators (predictor/classic_ml.py): scikit-learn's, LightGBM's and XGBoost's models as skl2onnx
and onnxmltools write them, counted by what ONNX Runtime's kernels do per row. Each model here is run by
ONNX Runtime too, so that its attributes are ones a real converter could have written."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeatlas.predictor import classic_ml
from edgeatlas.predictor.classic_ml import (EXP_OPS, LEAF_WEIGHT_OPS, PAIR_OPS, SVM_RBF_ELEMENT_OPS,
                                            TREE_VISIT_OPS)
from edgeatlas.predictor.graph import CATEGORIES, SCALAR_COLUMNS, from_onnx, onnx_summary

ML = "ai.onnx.ml"
FEATURES = 4


def leaf(*weights):
    return ("leaf", list(weights))


def split(feature, threshold, true, false):
    return ("split", feature, threshold, true, false)


# two trees: one balanced, its four leaves two deep; one a chain, its leaves one, two and two deep
BALANCED = split(0, 0.5, split(1, 0.2, leaf(1.0), leaf(2.0)), split(2, 0.7, leaf(3.0), leaf(4.0)))
CHAIN = split(3, 0.1, leaf(5.0), split(0, 0.9, leaf(6.0), leaf(7.0)))
VISITS = 2 + (1 + 2 + 2) / 3  # per row: each tree's mean leaf depth


def opset3(trees, tree_ids, kind="target"):
    """The attributes of a TreeEnsembleRegressor (kind "target") or Classifier ("class"), opset 1-3's form: node
    ids numbered from the last node back, so that they are not positions."""
    a = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
                         "nodes_truenodeids", "nodes_falsenodeids", f"{kind}_treeids", f"{kind}_nodeids",
                         f"{kind}_ids", f"{kind}_weights")}
    for tree, tid in zip(trees, tree_ids):
        flat = []

        def number(node):
            flat.append(node)
            return len(flat) - 1

        def walk(node):
            at = number(node)
            if node[0] == "split":
                kids = walk(node[3]), walk(node[4])
                flat[at] = (node, kids)
            else:
                flat[at] = (node, None)
            return at

        walk(tree)
        last = len(flat) - 1
        for i, (node, kids) in enumerate(flat):
            a["nodes_treeids"].append(tid)
            a["nodes_nodeids"].append(last - i)
            if kids is None:
                a["nodes_modes"].append("LEAF")
                a["nodes_featureids"].append(0)
                a["nodes_values"].append(0.0)
                a["nodes_truenodeids"].append(0)
                a["nodes_falsenodeids"].append(0)
                for target, w in enumerate(node[1]):
                    a[f"{kind}_treeids"].append(tid)
                    a[f"{kind}_nodeids"].append(last - i)
                    a[f"{kind}_ids"].append(target)
                    a[f"{kind}_weights"].append(w)
            else:
                a["nodes_modes"].append("BRANCH_LEQ")
                a["nodes_featureids"].append(node[1])
                a["nodes_values"].append(node[2])
                a["nodes_truenodeids"].append(last - kids[0])
                a["nodes_falsenodeids"].append(last - kids[1])
    return a


def opset5(trees):
    """The same forest as ONNX-ML opset 5's TreeEnsemble: children index the nodes, or the leaves where flagged."""
    a = {k: [] for k in ("tree_roots", "nodes_featureids", "nodes_splits", "nodes_truenodeids", "nodes_trueleafs",
                         "nodes_falsenodeids", "nodes_falseleafs", "leaf_targetids", "leaf_weights")}

    def walk(node):
        if node[0] == "leaf":
            a["leaf_targetids"].append(0)
            a["leaf_weights"].append(node[1][0])
            return len(a["leaf_weights"]) - 1, 1
        at = len(a["nodes_featureids"])
        a["nodes_featureids"].append(node[1])
        a["nodes_splits"].append(node[2])
        for key in ("nodes_truenodeids", "nodes_trueleafs", "nodes_falsenodeids", "nodes_falseleafs"):
            a[key].append(0)
        for side, child in (("true", node[3]), ("false", node[4])):
            index, is_leaf = walk(child)
            a[f"nodes_{side}nodeids"][at], a[f"nodes_{side}leafs"][at] = index, is_leaf
        return at, 0

    for tree in trees:
        a["tree_roots"].append(walk(tree)[0])
    a["nodes_splits"] = numpy_helper.from_array(np.array(a["nodes_splits"], np.float32))
    a["leaf_weights"] = numpy_helper.from_array(np.array(a["leaf_weights"], np.float32))
    a["nodes_modes"] = numpy_helper.from_array(np.zeros(len(a["nodes_featureids"]), np.uint8))
    return a | {"n_targets": 1, "aggregate_function": 1, "post_transform": 0}


def ml_model(nodes, rows, outputs=("y",), features=FEATURES, ml_opset=3):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, features])],
                              [helper.make_empty_tensor_value_info(o) for o in outputs])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, ml_opset)])
    m.ir_version = 9
    return m


def runs(m, rows, features=FEATURES):
    """ONNX Runtime loads and runs the model: its attributes describe a model."""
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": np.random.default_rng(0).random((rows, features)).astype(np.float32)})


def regressor(rows, trees=(BALANCED, CHAIN), tree_ids=(7, 3)):
    node = helper.make_node("TreeEnsembleRegressor", ["x"], ["y"], domain=ML, n_targets=1,
                            **opset3(trees, tree_ids))
    return ml_model([node], rows)


@pytest.mark.parametrize("rows", [1, 250])
def test_a_forest_is_charged_per_row_for_how_deep_its_trees_leaves_lie(rows):
    m = regressor(rows)
    runs(m, rows)
    g = from_onnx(m)
    leaf_adds = 2 * 7 / 7  # one weight a leaf, one leaf a tree reached per row
    assert g.flops[0] == pytest.approx(rows * (VISITS * TREE_VISIT_OPS + leaf_adds * LEAF_WEIGHT_OPS))
    assert g.uncounted == {}
    assert CATEGORIES[g.category[0]] == "elementwise" and set(g.lanes[0]) == {SCALAR_COLUMNS}
    assert g.params == 7 + 5 + 7  # nodes (leaves among them) and leaf weights: attributes, not initializers
    assert g.weight_bytes[0] == pytest.approx(min(7 + 5, rows * VISITS) * classic_ml.TREE_NODE_BYTES)


def test_opset_5s_tree_ensemble_is_the_same_forest_counted_alike():
    rows = 40
    old = from_onnx(regressor(rows))
    m = ml_model([helper.make_node("TreeEnsemble", ["x"], ["y"], domain=ML, **opset5([BALANCED, CHAIN]))], rows,
                 ml_opset=5)
    (y,) = runs(m, rows)
    assert y.shape == (rows, 1)
    new = from_onnx(m)
    assert new.uncounted == {}
    # opset 5 keeps no leaf nodes among its nodes: the same visits and leaf weights, fewer parameters
    assert new.flops[0] == pytest.approx(old.flops[0])
    assert new.params == 3 + 2 + 7


def test_a_classifier_adds_each_leafs_weights_for_every_class():
    rows, classes = 10, 3
    trees = [split(0, 0.5, leaf(0.1, 0.2, 0.7), leaf(0.6, 0.3, 0.1))] * 3
    node = helper.make_node("TreeEnsembleClassifier", ["x"], ["label", "y"], domain=ML,
                            classlabels_int64s=list(range(classes)), **opset3(trees, (0, 1, 2), kind="class"))
    m = ml_model([node], rows, outputs=("label", "y"))
    label, scores = runs(m, rows)
    assert scores.shape == (rows, classes)
    g = from_onnx(m)
    assert g.flops[0] == pytest.approx(rows * 3 * (1 * TREE_VISIT_OPS + classes * LEAF_WEIGHT_OPS))


def test_a_forest_whose_attributes_do_not_describe_trees_is_named_not_counted_and_a_cycle_ends():
    a = opset3([BALANCED], (0,))
    a["nodes_truenodeids"] = a["nodes_truenodeids"][:-1]  # one node short of a child
    m = ml_model([helper.make_node("TreeEnsembleRegressor", ["x"], ["y"], domain=ML, n_targets=1, **a)], 5)
    assert from_onnx(m).uncounted == {"TreeEnsembleRegressor": 1}
    # a node whose child is its own root: walked once, its leaf reached, counted
    a = opset3([CHAIN], (0,))
    root = a["nodes_nodeids"][0]
    a["nodes_falsenodeids"][a["nodes_nodeids"].index(root - 2)] = root
    g = from_onnx(ml_model([helper.make_node("TreeEnsembleRegressor", ["x"], ["y"], domain=ML, n_targets=1, **a)], 5))
    assert g.uncounted == {} and g.flops[0] > 0


def svm_attributes(vectors, classes, kernel):
    rng = np.random.default_rng(0)
    a = {"kernel_type": kernel, "kernel_params": [0.25, 0.0, 3.0],
         "support_vectors": rng.random(vectors * FEATURES).astype(np.float32).tolist()}
    if not classes:
        return a | {"n_supports": vectors, "coefficients": rng.standard_normal(vectors).tolist(), "rho": [0.1]}
    per = [vectors // classes + (c < vectors % classes) for c in range(classes)]
    return a | {"vectors_per_class": per, "classlabels_ints": list(range(classes)),
                "coefficients": rng.standard_normal((classes - 1) * vectors).tolist(),
                "rho": rng.standard_normal(classes * (classes - 1) // 2).tolist()}


def test_an_rbf_support_vector_machine_is_a_scalar_loop_over_rows_vectors_and_features():
    rows, vectors, classes = 20, 30, 4
    clf = ml_model([helper.make_node("SVMClassifier", ["x"], ["label", "y"], domain=ML,
                                     **svm_attributes(vectors, classes, "RBF"))], rows, outputs=("label", "y"))
    runs(clf, rows)
    g = from_onnx(clf)
    kernels = rows * vectors * (FEATURES * SVM_RBF_ELEMENT_OPS + EXP_OPS)
    assert g.flops[0] == pytest.approx(kernels + rows * vectors * (classes - 1) * PAIR_OPS)
    assert g.macs == 0 and set(g.lanes[0]) == {SCALAR_COLUMNS}
    assert g.params == vectors * FEATURES + (classes - 1) * vectors
    reg = ml_model([helper.make_node("SVMRegressor", ["x"], ["y"], domain=ML, **svm_attributes(vectors, 0, "RBF"))],
                   rows)
    runs(reg, rows)
    assert from_onnx(reg).flops[0] == pytest.approx(kernels + rows * vectors * PAIR_OPS)


def test_other_kernels_and_linear_models_are_a_matrix_product():
    rows, vectors, classes = 20, 30, 3
    poly = ml_model([helper.make_node("SVMClassifier", ["x"], ["label", "y"], domain=ML,
                                      **svm_attributes(vectors, classes, "POLY"))], rows, outputs=("label", "y"))
    runs(poly, rows)
    g = from_onnx(poly)
    assert g.macs == rows * vectors * FEATURES and CATEGORIES[g.category[0]] == "matmul"
    assert set(g.lanes[0]) == {vectors}  # the product's columns: one per support vector
    coefficients = np.random.default_rng(1).standard_normal(classes * FEATURES).tolist()
    linear = ml_model([helper.make_node("LinearClassifier", ["x"], ["label", "y"], domain=ML, coefficients=coefficients,
                                        intercepts=[0.0] * classes, classlabels_ints=list(range(classes)))],
                      rows, outputs=("label", "y"))
    runs(linear, rows)
    g = from_onnx(linear)
    assert g.macs == rows * classes * FEATURES and g.flops[0] == 2 * g.macs
    assert g.params == classes * FEATURES + classes and set(g.lanes[0]) == {classes}


def test_a_scikit_learn_pipeline_is_counted_whole_its_label_map_included():
    rows, classes = 50, 3
    coefficients = np.random.default_rng(2).standard_normal(classes * FEATURES).tolist()
    nodes = [helper.make_node("Scaler", ["x"], ["s"], domain=ML, offset=[0.5] * FEATURES, scale=[2.0] * FEATURES),
             helper.make_node("LinearClassifier", ["s"], ["label", "p"], domain=ML, coefficients=coefficients,
                              intercepts=[0.0] * classes, classlabels_ints=list(range(classes)),
                              post_transform="LOGISTIC"),
             helper.make_node("Normalizer", ["p"], ["n"], domain=ML, norm="L1"),
             helper.make_node("ZipMap", ["n"], ["y"], domain=ML, classlabels_int64s=list(range(classes)))]
    m = ml_model(nodes, rows, outputs=("label", "y"))
    label, maps = runs(m, rows)
    assert len(maps) == rows and set(maps[0]) == set(range(classes))
    # ONNX infers no shapes past ONNX-ML's operators: one run at the inputs observes them, as the predictor does
    assert set(onnx_summary(m)["uncounted"]) == {"LinearClassifier", "Normalizer", "ZipMap"}
    feeds = {"x": np.random.default_rng(0).random((rows, FEATURES)).astype(np.float32)}
    s = onnx_summary(m, feeds=feeds)
    assert s["uncounted"] == {}
    assert s["macs"] == rows * classes * FEATURES
    ops = classic_ml.ELEMENT_OPS
    g = from_onnx(m, feeds=feeds)
    assert list(g.flops) == pytest.approx([rows * FEATURES * ops["Scaler"], 2 * s["macs"],
                                           rows * classes * ops["Normalizer"], rows * classes * ops["ZipMap"]])
