"""Fingerprints: the reference set, the file's contract, and the few-shot calibration built on them."""

import json
import math
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from edgeatlas.predictor import fewshot
from edgeatlas.predictor import fingerprint as fp
from edgeatlas.protos.errors import InvalidInput


def test_reference_set_is_small_fixed_and_runs_at_any_batch():
    assert len(fp.NAMES) <= 10 and set(fp.BUILDERS) == set(fp.NAMES)
    graphs = fp.reference_graphs()
    assert graphs.names == list(fp.NAMES)
    flops = [graphs.flops[graphs.node_ptr[i]:graphs.node_ptr[i + 1]].sum() for i in range(len(graphs))]
    assert max(flops) < 2e9 and min(flops) < 1e6  # from dispatch-bound to about a GFLOP: a minute on a phone
    for name in fp.NAMES:
        session = ort.InferenceSession(fp.reference_model(name).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        feed = {}
        for i in session.get_inputs():
            shape = [2 if not isinstance(d, int) else d for d in i.shape]
            feed[i.name] = np.random.default_rng(0).random(shape, dtype=np.float32)
        out = session.run(None, feed)[0]
        assert out.shape[0] == 2 and np.all(np.isfinite(out)), name


def test_every_device_runs_the_same_bytes():
    """Seeded weights: another process builds byte-identical networks (the fingerprint compares like with like)."""
    code = ("from edgeatlas.predictor import fingerprint as fp; "
            "print(' '.join(fp.reference_sha256(n) for n in fp.NAMES))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert other == [fp.reference_sha256(n) for n in fp.NAMES]


def good(**change):
    data = {"format": fp.FORMAT, "reference_set": fp.REFERENCE_SET, "runtime": "onnxruntime", "threads": 1,
            "batch": 1, "target": "cpu", "latency_ms": {n: 1.0 + i for i, n in enumerate(fp.NAMES)}}
    data.update(change)
    return data


@pytest.mark.parametrize("data,reason", [
    (good(format="edgeatlas.fingerprint/v0"), "format"),
    (good(reference_set="edgeatlas.ref/v0"), "measure again"),
    (good(latency_ms={"resnet50": 3.0}), "not a network of"),
    (good(latency_ms={"gemm": -1.0}), "positive number"),
    (good(latency_ms={"gemm": True}), "positive number"),
    (good(latency_ms={"gemm": 1e12}), "positive number"),
    (good(latency_ms={}), "latency_ms"),
    (good(latency_ms=[1, 2]), "latency_ms"),
    (good(threads=-1), "threads"),
    (good(threads=1.5), "threads"),
    (good(batch=10 ** 9), "batch"),
    (good(runtime="onnx runtime; rm -rf"), "runtime"),
    (good(owner="me"), "unknown field"),
    (good(spread={"gemm": "wide"}), "spread"),
    (good(latency_ms={"conv3x3_int8": 9.0, "attention_int8": 1.0}), "a float network of edgeatlas.ref/v3 is needed"),
    # a v2 fingerprint whose float networks are all ones v3 dropped
    (good(reference_set="edgeatlas.ref/v2", latency_ms={"depthwise": 2.0, "fbnet": 1.0, "conv3x3_int8": 9.0}),
     "a float network of edgeatlas.ref/v3 is needed"),
    (good(reference_set="edgeatlas.ref/v1"), "not a network of edgeatlas.ref/v1"),  # v1 had no conv3x3_int8
    (good(reference_set="edgeatlas.ref/v2"), "not a network of edgeatlas.ref/v2"),  # nor v2 conv3x3_qdq
    (good(reference_set=["edgeatlas.ref/v1"]), "measure again"),
    ([1, 2, 3], "not a JSON object"),
])
def test_malformed_fingerprints_are_refused_in_one_line(tmp_path, data, reason):
    path = tmp_path / "f.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidInput, match=reason) as info:
        fp.Fingerprint.load(path)
    assert "\n" not in str(info.value)


def test_not_json_huge_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "f.json"
    path.write_text('{"format": NaN')
    with pytest.raises(InvalidInput, match="not JSON"):
        fp.Fingerprint.load(path)
    path.write_text(" " * (fp.MAX_FILE_BYTES + 1))
    with pytest.raises(InvalidInput, match="bytes"):
        fp.Fingerprint.load(path)
    with pytest.raises(InvalidInput, match="no such file"):
        fp.Fingerprint.load(tmp_path / "none.json")
    path.write_text(json.dumps(good(latency_ms={"gemm": float("nan")})))
    with pytest.raises(InvalidInput, match="positive number"):
        fp.Fingerprint.load(path)


def test_a_fingerprint_round_trips_and_calibrates_only_its_own_setting(tmp_path):
    f = fp.Fingerprint.from_dict(good())
    f.save(tmp_path / "f.json")
    again = fp.Fingerprint.load(tmp_path / "f.json")
    assert again == f
    again.check_setting("cpu", 1, 1, "onnxruntime")
    again.check_setting("cpu", 0, 1, "")  # batch 0 means 1; no runtime given means the fingerprint's
    with pytest.raises(InvalidInput, match="threads 1"):
        again.check_setting("cpu", 1, 4, "onnxruntime")
    with pytest.raises(InvalidInput, match="runtime"):
        again.check_setting("cpu", 1, 1, "tflite")


# v1's networks as v1 built them (commit 716bebf), and v2's int8 convolution: v2 and v3 must not change a
# byte of those they kept
V1_SHA256 = {
    "overhead": "10d42b3185f0b1a7deec38cfe28c597294192cc98cce68251a34ed408b1606e5",
    "gemv": "4bb66db076414af98b048a66ece6a4974d99e745d9cb636244aeefb5171f160f",
    "gemm": "0b518422103b88b98593eee2daa6658260a4d81046d6892f96c304e57ad53076",
    "conv3x3": "99c4cbcbf4926ab55e8364672fb0e06884528ff7a1c49d18224a82d3b8bf4894",
    "attention": "2555294c70fb2e14bb903c6500c29945a94ac5b5e94c4f1c0e17c914b01d9489",
    "activations": "92fcfa869249f3a1d689fd3e57b37bf8fc68b97cb78f216afaa99e6888fb11b0",
}
V2_SHA256 = {"conv3x3_int8": "f41bcee938170097be3c3762379236761af6fe3a26378e1f731dac027137b108"}
V3_SHA256 = {"conv3x3_qdq": "db0a811c8a852b89f31f52ccc09cab9838f698863ef745bca1b51f13e2b233ae",
             "depthwise_qdq": "8fbaf5c9c105971793ab6f91b22ac04c58d5c6302f2d7b3c9f3f9986568c2a5d",
             "attention_int8": "27fb176d369ebecc7da61b61e513bf8118d3d1a1bc99c1fea16f99ccf3de887e"}


def test_earlier_fingerprints_are_read_as_v3_without_what_they_lack_and_what_v3_dropped():
    """v3 kept six of v1's networks and v2's int8 convolution byte for byte: a v1 or v2 fingerprint still
    calibrates on those. The networks v3 dropped (depthwise, nasbench201, fbnet) are not v3's and are not
    used; those v3 added are missing."""
    v1 = fp.Fingerprint.from_dict(good(reference_set="edgeatlas.ref/v1",
                                       latency_ms={n: 1.0 for n in fp.EARLIER["edgeatlas.ref/v1"]},
                                       spread={"fbnet": 1.1, "gemm": 1.2}))
    assert set(v1.latency_ms) == set(V1_SHA256) and v1.spread == {"gemm": 1.2}  # fbnet's dropped
    v2 = fp.Fingerprint.from_dict(good(reference_set="edgeatlas.ref/v2",
                                       latency_ms={n: 1.0 for n in fp.EARLIER["edgeatlas.ref/v2"]}))
    assert set(v2.latency_ms) == set(V1_SHA256) | set(V2_SHA256)
    assert v2.reference_set == "edgeatlas.ref/v2"  # what it was measured on, as the file says
    assert set(fp.NAMES) - set(v2.latency_ms) == {"conv3x3_qdq", "depthwise_qdq", "attention_int8"}
    for name, sha256 in {**V1_SHA256, **V2_SHA256, **V3_SHA256}.items():
        assert fp.reference_sha256(name) == sha256, name
    assert set(fp.NAMES) == set(V1_SHA256) | set(V2_SHA256) | set(V3_SHA256)


def test_each_int8_network_runs_on_the_integer_kernels_it_measures():
    """As ONNX Runtime runs them (its QDQ pairs fused into QLinearConv, a quantization feeding one projection
    into DynamicQuantizeMatMul), each int8 network's integer multiply-adds are of the kinds it measures, or
    of kinds an earlier one measured: else `commands.int8_extras` would lay one kernel's cost on another."""
    graphs = fp.reference_graphs("onnxruntime")
    macs = graphs.int8_macs()
    solved = set()
    for name in fp.NAMES:
        mine = {kind for kind, m in macs.items() if m[fp.NAMES.index(name)] > 0}
        if name not in fp.INT8_NAMES:
            assert not mine, name  # the float networks compute in float
            continue
        assert set(fp.INT8_KINDS[name]) <= mine and mine <= set(fp.INT8_KINDS[name]) | solved, (name, mine)
        solved |= mine


def _law(rng, k):
    """k networks: zero-shot log ms and the share of it that is fixed cost (per operator and per call)."""
    return rng.uniform(-2, 4, k), rng.uniform(0.05, 0.95, k)


def test_calibration_recovers_a_uniform_factor():
    rng = np.random.default_rng(1)
    pred, share = _law(rng, 9)
    cal = fewshot.calibrate(pred, np.exp(pred + math.log(3.0)), 1.0, share)
    assert cal.loo_mape < 1
    new_pred, new_share = _law(rng, 50)
    np.testing.assert_allclose(cal.apply(new_pred, new_share), new_pred + math.log(3.0), atol=0.02)
    assert cal.half_width <= 0.05  # the shots fit exactly: the interval is as narrow as its floor


def test_calibration_learns_a_runtime_with_less_per_operator_cost():
    """The device's runtime has a tenth of the training runtimes' fixed cost per operator, and its cores do
    the work 1.5× faster: networks of many small operators are over-predicted most. The split correction
    finds both factors, where a uniform factor cannot."""
    rng = np.random.default_rng(2)
    pred, share = _law(rng, 9)
    truth = np.exp(pred) * (0.1 * share + (1 - share) / 1.5)
    cal = fewshot.calibrate(pred, truth, 1.0, share)
    assert cal.kind == "split" and cal.params == pytest.approx((0.1, 1 / 1.5), rel=1e-3)
    offset_only = fewshot.calibrate(pred, truth, 1.0, None)
    test_pred, test_share = _law(rng, 200)
    test_truth = np.log(np.exp(test_pred) * (0.1 * test_share + (1 - test_share) / 1.5))
    err = np.abs(np.expm1(cal.apply(test_pred, test_share) - test_truth))
    err_other = np.abs(np.expm1(offset_only.apply(test_pred) - test_truth))
    assert err.mean() < 0.01 < err_other.mean()
    with pytest.raises(ValueError, match="share"):
        cal.apply(test_pred)


def test_interval_is_conformal_over_leave_one_out_and_falls_back_below_four_shots():
    rng = np.random.default_rng(3)
    pred, share = _law(rng, 10)
    noise = rng.normal(0, 0.2, 10)
    cal = fewshot.calibrate(pred, np.exp(pred + noise), 7.0, share)
    assert 0.05 < cal.half_width < 1.0  # the 9th smallest of 10 leave-one-out residuals, not the prior
    few = fewshot.calibrate(pred[:3], np.exp(pred[:3] + noise[:3]), 7.0, share[:3])
    assert few.half_width == 7.0 and few.kind == "offset"
    # coverage on new networks from the same law: about 80 %
    test_pred, test_share = _law(rng, 2000)
    y = test_pred + rng.normal(0, 0.2, 2000)
    inside = np.abs(cal.apply(test_pred, test_share) - y) <= cal.half_width
    assert 0.6 < inside.mean() < 0.98


@pytest.mark.parametrize("k", [6, 9, 10])
def test_designed_shots_take_the_plain_quantile_of_their_leave_one_out_residuals(k):
    """Drawn shots take the ⌈0.8·(K+1)⌉-th smallest leave-one-out residual (split-conformal); shots chosen
    one per regime (a fingerprint's) the ⌈0.8·K⌉-th. With 6 of them the first rank is the largest residual:
    the one shot that alone measured a regime, left out, which no query is missed by. With 9 both ranks
    are the 8th."""
    rng = np.random.default_rng(k)
    pred = rng.uniform(-2, 4, k)
    d = rng.normal(0, 0.05, k)
    d[0] = 3.0  # the one shot nothing else resembles
    drawn = fewshot.calibrate(pred, np.exp(pred + d), 7.0).half_width
    designed = fewshot.calibrate(pred, np.exp(pred + d), 7.0, designed=True).half_width
    if k == 9:
        assert drawn == designed
    else:
        assert designed < drawn
    if k == 6:
        assert drawn > 2.0 > 1.5 > designed  # the outlier's own residual, and the next one


def test_corrections_are_averaged_by_their_leave_one_out_errors():
    """No single correction is right (fixed costs and work off by different factors, and noise): each is
    weighted by 1 / the square of its typical leave-one-out error (the median relative error), and the answer is
    their weighted mean in log time."""
    rng = np.random.default_rng(6)
    pred, share = _law(rng, 10)
    truth = np.exp(pred) * (0.3 * share + 1.4 * (1 - share)) * np.exp(rng.normal(0, 0.15, 10))
    cal = fewshot.calibrate(pred, truth, 1.0, share)
    kinds = [kind for kind, _, _ in cal.parts]
    assert kinds == ["offset", "affine", "split"]  # physical needs the terms
    precision = []
    for kind in kinds:
        loo = [fewshot._predict(kind, fewshot._fit(kind, np.delete(pred, i), np.delete(np.log(truth), i),
                                                   np.delete(share, i), None), pred[i:i + 1], share[i:i + 1], None)[0]
               - math.log(truth[i]) for i in range(10)]
        precision.append(np.median(np.abs(np.expm1(loo))) ** -2)
    weights = np.array([w for _, _, w in cal.parts])
    np.testing.assert_allclose(weights, np.array(precision) / sum(precision), rtol=1e-9)
    assert cal.kind == kinds[int(np.argmax(weights))] and 0 < weights.min() and weights.max() < 1
    new_pred, new_share = _law(rng, 20)
    each = [fewshot._predict(kind, params, new_pred, new_share, None) for kind, params, _ in cal.parts]
    np.testing.assert_allclose(cal.apply(new_pred, new_share), np.tensordot(weights, each, axes=1))
    assert "corrections averaged from 10 shots (split" in cal.describe()


def test_a_shot_that_alone_measures_a_regime_does_not_decide_the_weights():
    """A fingerprint measures each regime with one network: here only the tiny-operator one shows the
    per-operator cost. The device follows the physical law (2 % timing noise); the model is off by about
    40 % on each network. Left without that shot, the physical fit cannot know the per-operator cost and
    misses it by ×3 or more, an error the full fit never makes on a query: physical still takes nearly all
    the weight (scored by the mean leave-one-out error, it took 0.2-87 % over these seeds)."""
    law = np.array([1 / 0.6, 1 / 0.9, 0.004])  # 60 % of peak compute, 90 % of peak bandwidth, 4 µs per operator
    for seed in range(5):
        rng = np.random.default_rng(seed)
        terms = np.stack([rng.uniform(0.2, 20, 9), rng.uniform(0.1, 5, 9), np.ones(9)], axis=1)
        terms[0] = (1e-5, 1e-3, 48)  # the overhead network: 48 operators that do next to nothing
        truth = terms @ law * np.exp(np.r_[0, rng.normal(0, 0.02, 8)])
        share = np.clip(terms[:, 2] * law[2] / truth, 0, 1)
        pred = np.log(truth) + rng.normal(0, 0.4, 9)
        cal = fewshot.calibrate(pred, truth, 1.0, share, terms=terms)
        left_out = fewshot._fit("physical", pred[1:], np.log(truth[1:]), share[1:], terms[1:])
        missed = fewshot._predict("physical", left_out, pred[:1], share[:1], terms[:1])[0] - math.log(truth[0])
        assert abs(missed) > math.log(3), seed
        assert dict((kind, w) for kind, _, w in cal.parts)["physical"] > 0.9, seed
        new = np.stack([rng.uniform(0.2, 20, 30), rng.uniform(0.1, 5, 30), rng.integers(5, 200, 30)], axis=1)
        got = cal.apply(np.log(new @ law) + rng.normal(0, 0.4, 30), np.full(30, 0.5), new)
        assert np.abs(np.expm1(got - np.log(new @ law))).mean() < 0.03, seed


def test_physical_calibration_needs_no_model_and_measures_the_device_s_efficiencies():
    """A runtime the model never saw: its zero-shot answers are noise, but the device's times follow
    compute at 40 % of peak, memory at 80 % and 10 µs per operator; the shots reveal all three."""
    rng = np.random.default_rng(4)
    terms = np.stack([rng.uniform(0.01, 20, 9), rng.uniform(0.01, 5, 9), rng.integers(5, 400, 9)], axis=1)
    truth = terms @ np.array([1 / 0.4, 1 / 0.8, 0.01])
    noise_model = rng.uniform(-2, 4, 9)  # a zero-shot model that knows nothing of this runtime
    cal = fewshot.calibrate(noise_model, truth, 1.0, terms=terms)
    assert cal.kind == "physical" and cal.params == pytest.approx((2.5, 1.25, 0.01), rel=1e-3)
    assert "40 % of peak compute, 80 % of peak bandwidth, 10 µs per operator" in cal.describe()
    with pytest.raises(ValueError, match="terms"):
        cal.apply(noise_model)


def test_traffic_that_streams_past_the_cache_is_charged_at_the_sheet_s_bandwidth_not_fitted():
    """The physical terms' fourth column, the memory time of traffic past the last-level cache at the sheet's
    bandwidth, is added as it is: the shots (which fit in a cache, D = 0) fit the same θ with or without it,
    a query's answer is θ·[C, M, n] + D, and a shot whose streamed traffic is known fits θ on the rest of its
    time."""
    rng = np.random.default_rng(5)
    law = np.array([1 / 0.4, 1 / 2.5, 0.01])  # the cache served memory at 2.5× the sheet's bandwidth
    terms = np.stack([rng.uniform(0.01, 20, 8), rng.uniform(0.01, 5, 8), rng.integers(5, 400, 8)], axis=1)
    truth = terms @ law
    three = fewshot.calibrate(np.zeros(8), truth, 1.0, terms=terms, designed=True)
    four = fewshot.calibrate(np.zeros(8), truth, 1.0, terms=np.c_[terms, np.zeros(8)], designed=True)
    assert four.params == pytest.approx(three.params)
    assert four.params == pytest.approx(tuple(law), rel=1e-3)
    query = np.array([[5.0, 2.0, 100.0, 7.0]])  # 7 ms of it streams from memory
    assert math.exp(four.apply(np.zeros(1), None, query)[0]) == pytest.approx(5 * law[0] + 2 * law[1] + 1 + 7)
    assert math.exp(four.apply(np.zeros(1), None, query[:, :3])[0]) == pytest.approx(5 * law[0] + 2 * law[1] + 1)
    streamed = np.c_[terms, np.r_[4.0, np.zeros(7)]]  # one shot also streamed 4 ms
    refit = fewshot.calibrate(np.zeros(8), truth + streamed[:, 3], 1.0, terms=streamed, designed=True)
    assert refit.params == pytest.approx(tuple(law), rel=1e-3)


def test_a_reference_set_is_answered_by_the_physical_correction_alone():
    """A fingerprint's shots are chosen one per regime: each of the physical correction's terms is pinned by
    the shot of its regime, which leave-one-out takes away, so it cannot weigh physical against the
    GNN's corrections there. Designed shots are answered by physical alone, its interval from its own
    residuals on them; the same shots drawn as queries are are still averaged. Without the terms
    (a sheet nothing physical can be read from) designed shots are averaged too."""
    rng = np.random.default_rng(7)
    law = np.array([1 / 0.6, 1 / 0.9, 0.004])
    terms = np.stack([rng.uniform(0.2, 20, 6), rng.uniform(0.1, 5, 6), rng.integers(3, 30, 6)], axis=1)
    terms[0] = (1e-5, 1e-3, 48)  # the overhead network
    truth = terms @ law * np.exp(rng.normal(0, 0.05, 6))
    pred = np.log(truth) + rng.normal(0, 0.3, 6)  # the GNN, about as close as physical on the shots
    share = np.full(6, 0.3)
    designed = fewshot.calibrate(pred, truth, 1.0, share, terms=terms, designed=True)
    drawn = fewshot.calibrate(pred, truth, 1.0, share, terms=terms)
    assert [kind for kind, _, _ in designed.parts] == ["physical"] and designed.parts[0][2] == 1.0
    assert designed.describe().startswith("physical from 6 shots (")
    assert len(drawn.parts) == 4 and designed.parts[0][1] == pytest.approx(
        dict((kind, params) for kind, params, _ in drawn.parts)["physical"])
    k = 6
    loo = []
    for i in range(k):
        keep = np.arange(k) != i
        fit = fewshot._fit("physical", pred[keep], np.log(truth[keep]), share[keep], terms[keep])
        loo.append(fewshot._predict("physical", fit, pred[i:i + 1], share[i:i + 1], terms[i:i + 1])[0]
                   - math.log(truth[i]))
    # its interval: the 5th of its 6 residuals on the shots, scaled by √(6 / 3) for the 3 parameters fitted to
    # them; not the 5th leave-one-out residual, the overhead network's absence, which no query suffers
    fitted = fewshot._predict("physical", designed.params, pred, share, terms) - np.log(truth)
    assert designed.half_width == pytest.approx(max(np.sort(np.abs(fitted))[4] * math.sqrt(2), 0.02))
    assert designed.half_width < np.sort(np.abs(loo))[4]
    new = np.stack([rng.uniform(0.2, 20, 20), rng.uniform(0.1, 5, 20), rng.integers(5, 200, 20)], axis=1)
    got = designed.apply(np.zeros(20), None, new)  # no share needed: the GNN's answer is not used
    assert np.abs(np.expm1(got - np.log(new @ law))).mean() < 0.1
    blind = fewshot.calibrate(pred, truth, 1.0, share, designed=True)
    assert "physical" not in [kind for kind, _, _ in blind.parts] and len(blind.parts) == 3
