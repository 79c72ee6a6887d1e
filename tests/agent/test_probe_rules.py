"""The probe's rules on devices it has never seen.

Two kinds of test: synthetic trees built in the shape of each kind of device the probe used to get wrong
(a tree is what /proc, /sys and getprop say, written by `Tree`), and properties over the recorded
fixtures: take cores offline, drop /sys, drop getprop, shuffle /proc/cpuinfo — the answer stays right or
becomes less specific (a field turns null, a core design turns null, a bin suffix drops), never wrong.
"""

import json
import random
import re
import shutil
from pathlib import Path

import pytest

from edgeatlas.agent import socs
from edgeatlas.agent.cpus import Midr, arm_core
from edgeatlas.agent.probe import parse_cpu_list, probe

from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "devices"
DEVICES = sorted(d.name for d in FIXTURES.iterdir() if (d / "expected.json").is_file())

A53, A55, A73, A75, A78, X1 = (0x41, 0xD03), (0x41, 0xD05), (0x41, 0xD09), (0x41, 0xD0A), (0x41, 0xD41), (0x41, 0xD44)


class Tree:
    """A device's files under `root`."""

    def __init__(self, root: Path, processors: int):
        self.root = root
        self.n = processors
        self.write("sys/devices/system/cpu/possible", f"0-{processors - 1}\n")
        self.write("sys/devices/system/cpu/present", f"0-{processors - 1}\n")

    def write(self, rel: str, text: str) -> "Tree":
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return self

    def cpu(self, i: int, rel: str, text: str) -> "Tree":
        return self.write(f"sys/devices/system/cpu/cpu{i}/{rel}", text + "\n")

    def cluster(self, cpus: range, khz: int, package: int) -> "Tree":
        for i in cpus:
            self.cpu(i, "cpufreq/cpuinfo_max_freq", str(khz))
            self.cpu(i, "cpufreq/cpuinfo_min_freq", "300000")
            self.cpu(i, "topology/physical_package_id", str(package))
            self.cpu(i, "topology/core_siblings_list", f"{cpus[0]}-{cpus[-1]}")
        return self

    def arm_cpuinfo(self, parts: dict[int, tuple[int, int]], variant: int = 0, hardware: str | None = None,
                    after_all: bool = False) -> "Tree":
        """`processor` blocks with MIDR fields for the processors in `parts` (online ones); `after_all`:
        the old kernels' layout (every processor line first, then one set of fields)."""
        def fields(implementer: int, part: int) -> str:
            return (f"Features\t: fp asimd evtstrm aes crc32\nCPU implementer\t: 0x{implementer:02x}\n"
                    f"CPU architecture: 8\nCPU variant\t: 0x{variant:x}\nCPU part\t: 0x{part:03x}\n"
                    "CPU revision\t: 1\n")
        if after_all:
            text = "".join(f"processor\t: {i}\n" for i in parts) + fields(*parts[max(parts)])
        else:
            text = "\n".join(f"processor\t: {i}\nBogoMIPS\t: 38.40\n" + fields(*midr) for i, midr in parts.items())
        if hardware:
            text += f"\nHardware\t: {hardware}\n"
        return self.write("proc/cpuinfo", text)

    def getprop(self, **props: str) -> "Tree":
        return self.write("getprop.txt", "".join(f"[{k.replace('_', '.')}]: [{v}]\n" for k, v in props.items()))


def clusters(spec) -> list[tuple[str | None, int]]:
    return [(c["core"], c["cores"]) for c in spec.get("cpu.clusters") or []]


def test_three_designs_behind_one_siblings_list_are_three_clusters(tmp_path):
    """A DynamIQ flagship: 1 + 4 + 4 cores of three designs, nine processors, the kernel listing all nine as
    one package (the probe used to give an empty CPU section)."""
    t = Tree(tmp_path, 9)
    for i in range(9):
        t.cpu(i, "topology/physical_package_id", "0").cpu(i, "topology/core_siblings_list", "0-8")
    for cpus, khz in ((range(0, 4), 1_800_000), (range(4, 8), 2_400_000), (range(8, 9), 3_000_000)):
        for i in cpus:
            t.cpu(i, "cpufreq/cpuinfo_max_freq", str(khz))
    t.arm_cpuinfo({**{i: A55 for i in range(4)}, **{i: A78 for i in range(4, 8)}, 8: X1}, variant=1)
    spec = probe(tmp_path, measure_bandwidth=False)
    assert spec.get("cpu.threads") == 9 and spec.get("cpu.cores") == 9
    assert clusters(spec) == [("cortex-x1", 1), ("cortex-a78", 4), ("cortex-a55", 4)]
    assert [c["max_ghz"] for c in spec.get("cpu.clusters")] == [3.0, 2.4, 1.8]


def test_ten_cores_in_three_clusters_with_only_the_first_cluster_online(tmp_path):
    """A 2 + 4 + 4 phone (MediaTek Helio X20) whose kernel describes only the online cluster."""
    t = Tree(tmp_path, 10).cluster(range(0, 4), 1_391_000, 0)
    t.arm_cpuinfo({i: A53 for i in range(4)}, hardware="MT6797")
    spec = probe(tmp_path, measure_bandwidth=False)
    assert spec.get("soc") == "MediaTek MT6797" and spec.get("cpu.threads") == 10
    assert clusters(spec) == [("cortex-a72", 2), ("cortex-a53", 4), ("cortex-a53", 4)]


def test_offline_cores_of_one_cluster_stay_in_it(tmp_path):
    """Identical cores, some offline, no package id (the kernel writes -1): one cluster, not 1-core ones."""
    t = Tree(tmp_path, 4)
    for i in (0, 1):
        t.cpu(i, "cpufreq/cpuinfo_max_freq", "1512000").cpu(i, "topology/physical_package_id", "-1")
        t.cpu(i, "topology/core_siblings_list", str(i))
    t.arm_cpuinfo({0: (0x51, 0x06F), 1: (0x51, 0x06F)}, hardware="Qualcomm APQ8064")
    assert clusters(probe(tmp_path, measure_bandwidth=False)) == [("krait", 4)]


def test_two_clusters_of_the_same_design_stay_two(tmp_path):
    """8 × Cortex-A53 in two clusters at two clocks (Snapdragon 615-like): two clusters, faster first."""
    t = Tree(tmp_path, 8).cluster(range(0, 4), 1_100_000, 1).cluster(range(4, 8), 1_700_000, 0)
    t.arm_cpuinfo({i: A53 for i in range(8)})
    spec = probe(tmp_path, measure_bandwidth=False)
    assert clusters(spec) == [("cortex-a53", 4), ("cortex-a53", 4)]
    assert [c["max_ghz"] for c in spec.get("cpu.clusters")] == [1.7, 1.1]


def test_big_little_with_the_little_cores_offline(tmp_path):
    """Little cores 0-3 offline (nothing describes them), big Cortex-A73s 4-7 online: the little cluster is
    the LITTLE core an A73 pairs with, not a second big cluster."""
    t = Tree(tmp_path, 8).cluster(range(4, 8), 2_360_000, 1)
    t.arm_cpuinfo({i: A73 for i in range(4, 8)})
    spec = probe(tmp_path, measure_bandwidth=False)
    assert clusters(spec) == [("cortex-a73", 4), ("cortex-a53", 4)]
    assert spec.hardware_class() == "cpu:cortex-a73x4+cortex-a53x4"


def test_one_midr_after_every_processor_line_is_not_pinned_on_one_cluster(tmp_path):
    """Old kernels print every `processor` line, then one set of fields (for whichever core read the file):
    with two clusters it tells one design, not which cluster has it; the SoC's layout settles it."""
    t = Tree(tmp_path, 8).cluster(range(0, 4), 1_500_000, 1).cluster(range(4, 8), 2_100_000, 0)
    t.arm_cpuinfo({i: A53 for i in range(8)}, hardware="SAMSUNG Exynos7420", after_all=True)
    assert clusters(probe(tmp_path, measure_bandwidth=False)) == [("cortex-a57", 4), ("cortex-a53", 4)]


def test_nothing_describes_the_processors_so_clusters_are_unknown(tmp_path):
    """Present and possible list six processors and nothing else is said: no 4 + 2 guess."""
    Tree(tmp_path, 6)
    spec = probe(tmp_path, measure_bandwidth=False)
    assert spec.get("cpu.threads") == 6 and spec.get("cpu.clusters") is None


@pytest.mark.parametrize("implementer, part, features, core", [
    (0x56, 0x584, "", "pj4"),  # Marvell PJ4B-MP (PXA986 and kin): had no name
    (0x56, 0x581, "", "pj4"),
    (0x51, 0x00F, "swp half thumb fastmult vfp edsp neon vfpv3 tls vfpv4", "cortex-a5"),  # reports Scorpion's part
    (0x51, 0x00F, "swp half thumb fastmult vfp edsp neon vfpv3 tls", "scorpion"),
    (0x41, 0xB76, "", "arm11"),
    (0x69, 0x200, "", "xscale"),
])
def test_core_designs_cpuinfo_names(implementer, part, features, core):
    assert arm_core(Midr(implementer, 0, part), set(features.split())) == core


@pytest.mark.parametrize("hardware, props, soc", [
    # a bin suffix in one source refines the same part in an earlier one
    ("Qualcomm MSM8974PRO-AC", {"ro.chipname": "MSM8974"}, "Qualcomm MSM8974PRO-AC"),
    ("Qualcomm MSM 8974", {"ro.board.platform": "msm8974PRO-AC"}, "Qualcomm MSM8974PRO-AC"),
    ("PXA986", {}, "Marvell PXA986"),
    ("aries", {"ro.board.platform": "s5pc110"}, "Samsung Exynos 3110"),
    (None, {"ro.product.board": "song"}, "Pinecone Surge S1"),
    ("SMDK4x12", {}, "Samsung Exynos 4412"),  # four cores here; two would be the 4212
    ("sc8830", {}, None),  # Spreadtrum's kernel platform, not a chip: not named from that line alone
    ("sc8830", {"ro.chipname": "SC7730SE"}, "Spreadtrum SC7730SE"),
])
def test_soc_names_cpuinfo_gives(hardware, props, soc):
    assert socs.soc_name(hardware, props, [], 4)[0] == soc


@pytest.mark.parametrize("hardware, props, cores, soc", [
    # kernels' common misreports, corrected by the count of cores (cpuinfo's fix-ups)
    (None, {"ro.board.platform": "msm8960"}, 4, "Qualcomm APQ8064"),
    (None, {"ro.board.platform": "msm8960"}, 2, "Qualcomm MSM8960"),
    ("Rockchip RK3288", {}, 6, "Rockchip RK3399"),
    ("MT6752", {}, 4, "MediaTek MT6732"),
    ("Qualcomm Technologies, Inc MSM8916MSM8916", {}, 4, "Qualcomm MSM8916"),  # the part written twice
    ("MT6795TURBO", {}, 8, "MediaTek MT6795T"),
    # sources of two vendors: nothing to believe
    ("Qualcomm MSM8974", {"ro.board.platform": "mt6589"}, 4, None),
    # one vendor, two chips: that vendor's order of belief (MediaTek: ro.chipname, then the Hardware line)
    ("MT6735", {"ro.chipname": "MT6737T", "ro.board.platform": "mt6735"}, 4, "MediaTek MT6737T"),
    ("MT6735", {"ro.board.platform": "mt6737"}, 4, "MediaTek MT6735"),
])
def test_soc_names_across_sources(hardware, props, cores, soc):
    assert socs.soc_name(hardware, props, [], cores)[0] == soc


def test_a_count_that_is_only_a_lower_bound_settles_only_what_it_can():
    assert socs.soc_name(None, {"ro.chipname": "exynos7580"}, [], 8, exact=False)[0] == "Samsung Exynos 7580"
    assert socs.soc_name(None, {"ro.chipname": "exynos7580"}, [], 4, exact=False)[0] is None  # 7578 or 7580
    assert socs.soc_name(None, {"ro.board.platform": "msm8960"}, [], 3, exact=False)[0] == "Qualcomm APQ8064"


def test_an_atom_is_named_with_its_full_part_number():
    assert socs.decode("Intel(R) Atom(TM) x5-Z8350  CPU @ 1.44GHz") == "Intel Atom x5-Z8350"
    assert socs.decode("Intel(R) Atom(TM) CPU  Z3745  @ 1.33GHz") == "Intel Atom Z3745"


def x86_cpuinfo(model_name: str, family: int, model: int, cores: list[int], threads_per_core: int = 1,
                flags: str = "fpu sse2 ssse3 sse4_1 sse4_2", mhz: float | None = None) -> str:
    blocks = []
    for n, core in enumerate(c for c in cores for _ in range(threads_per_core)):
        blocks.append(f"processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: {family}\nmodel\t\t: {model}\n"
                      f"model name\t: {model_name}\nphysical id\t: 0\ncore id\t\t: {core}\n"
                      + (f"cpu MHz\t\t: {mhz}\n" if mhz else "") + f"flags\t\t: {flags}\n")
    return "\n".join(blocks)


def test_x86_android_phone_with_silvermont_cores(tmp_path):
    """An Atom Z3580 phone (Moorefield): no cache topology and no cpufreq in /sys. Silvermont cores come in
    two-core modules sharing an L2 — a property of the design, not of this phone."""
    t = Tree(tmp_path, 4).write("proc/cpuinfo", x86_cpuinfo("Intel(R) Atom(TM) CPU Z3580 @ 1.33GHz", 6, 0x5A,
                                                              [0, 1, 2, 3]))
    t.getprop(ro_product_cpu_abi="x86", ro_board_platform="moorefield")
    spec = probe(tmp_path, measure_bandwidth=False)
    assert spec.get("soc") == "Intel Atom Z3580"
    assert (spec.get("cpu.threads"), spec.get("cpu.cores")) == (4, 4)
    assert clusters(spec) == [("silvermont", 2), ("silvermont", 2)]
    assert spec.get("cpu.base_ghz") == 1.33 and spec.get("cpu.max_ghz") is None  # turbo unknown


def test_x86_phone_without_proc_cpuinfo_is_still_x86(tmp_path):
    """Only /sys and Android's ABI property: counted as x86 threads and cores, nothing guessed."""
    t = Tree(tmp_path, 4).getprop(ro_product_cpu_abi="x86")
    for i in range(4):
        t.cpu(i, "topology/core_id", str(i // 2)).cpu(i, "topology/physical_package_id", "0")
        t.cpu(i, "cache/index2/level", "2").cpu(i, "cache/index2/type", "Unified")
        t.cpu(i, "cache/index2/shared_cpu_list", "0-1" if i < 2 else "2-3")
    spec = probe(tmp_path, measure_bandwidth=False)
    assert spec.get("cpu.arch") == "x86_64" and spec.get("cpu.cores") == 2
    assert clusters(spec) == [(None, 1), (None, 1)]


def test_x86_virtual_machine_has_its_clock_and_one_cluster(tmp_path):
    """This machine's shape: a VM with no cpufreq, two cores with their own L2 and one shared L3 — one
    cluster (the cores that share the last-level cache), and the host's nominal clock from /proc/cpuinfo, a
    base clock: the host's cores ran a chain of dependent adds at 3.5 GHz here, not the 2.596 it states."""
    t = Tree(tmp_path, 2).write("proc/cpuinfo", x86_cpuinfo("AMD EPYC", 25, 17, [0, 1],
                                                            flags="fpu sse2 avx2 hypervisor", mhz=2596.142))
    for i in range(2):
        for index, level, shared in ((2, 2, str(i)), (3, 3, "0-1")):
            t.cpu(i, f"cache/index{index}/level", str(level)).cpu(i, f"cache/index{index}/type", "Unified")
            t.cpu(i, f"cache/index{index}/shared_cpu_list", shared)
    sources: dict[str, str] = {}
    spec = probe(tmp_path, measure_bandwidth=False, sources=sources)
    assert spec.get("cpu.base_ghz") == 2.596 and spec.get("cpu.max_ghz") is None
    assert "nominal" in sources["cpu.base_ghz"] and "cpu.max_ghz" not in sources
    assert spec.get("cpu.clusters")[0]["max_ghz"] is None
    assert len(spec.get("cpu.clusters")) == 1 and spec.get("cpu.clusters")[0]["cores"] == 2


def test_explain_names_a_source_for_each_field_decided(tmp_path):
    sources: dict[str, str] = {}
    spec = probe(FIXTURES / "galaxy-s6", measure_bandwidth=False, sources=sources)
    assert spec.get("soc") == "Samsung Exynos 7420"
    assert sources["soc"].startswith("getprop ro.chipname")
    assert "layout" in sources["cpu.clusters[].core"]  # one MIDR for eight cores: the SoC's layout named the designs
    assert sources["cpu.threads"] == "cpu/present ∩ cpu/possible"


# ---- properties over the recorded devices -------------------------------------------------------------

def observed(spec) -> dict:
    return {"processors": spec.get("cpu.threads"), "cores": spec.get("cpu.cores"),
            "clusters": clusters(spec) or None, "soc": spec.get("soc"),
            "clocks": all(c["max_ghz"] for c in spec.get("cpu.clusters") or [])}


def no_worse(field: str, got, full) -> bool:
    """Right, or less specific: null; a bin suffix dropped; clusters of the same shape with a design
    unnamed, or (clocks unknown, so which of two equal designs is bigger cannot be told) in another order."""
    if got is None or got == full:
        return True
    if field == "soc":
        return isinstance(full, str) and full.startswith(got)
    if field == "clusters" and full and len(got) == len(full):
        return all(n == m and core in (None, want) for (core, n), (want, m) in zip(got, full)) or sorted(
            got, key=str) == sorted(full, key=str)
    return False


def _blocks(text: str) -> list[str]:
    return re.split(r"\n(?=processor\s*:)", text)


def _present(root: Path) -> list[int]:
    path = root / "sys/devices/system/cpu/present"
    return parse_cpu_list(path.read_text()) if path.is_file() else []


def take_offline(root: Path, keep: set[int]) -> None:
    """What the kernel shows of offline cores: no /proc/cpuinfo block, no cpufreq, topology or cache."""
    cpuinfo = root / "proc/cpuinfo"
    if cpuinfo.is_file():
        parts = _blocks(cpuinfo.read_text())
        last = parts[-1].split("\n")
        cut = next((k for k, line in enumerate(last) if line.startswith(("Hardware", "Revision", "Serial"))), len(last))
        parts[-1], tail = "\n".join(last[:cut]), last[cut:]
        kept = [b for b in parts if not (m := re.match(r"processor\s*:\s*(\d+)", b)) or int(m.group(1)) in keep]
        cpuinfo.write_text("\n".join(kept + tail))
    cpus = root / "sys/devices/system/cpu"
    for d in cpus.glob("cpu[0-9]*"):
        if int(d.name[3:]) not in keep:
            for sub in ("cpufreq", "topology", "cache"):
                shutil.rmtree(d / sub, ignore_errors=True)
    if cpus.is_dir():
        (cpus / "online").write_text(",".join(map(str, sorted(keep))) + "\n")


def _shuffle(root: Path) -> None:
    cpuinfo = root / "proc/cpuinfo"
    if cpuinfo.is_file():
        parts = _blocks(cpuinfo.read_text())
        cpuinfo.write_text("\n".join(random.Random(7).sample(parts, len(parts))))


MUTATIONS = {
    "no-sys": lambda r: shutil.rmtree(r / "sys", ignore_errors=True),
    "no-getprop": lambda r: (r / "getprop.txt").unlink(missing_ok=True),
    "shuffled-cpuinfo": _shuffle,
    "upper-half-offline": lambda r: take_offline(r, set(range(max(1, len(_present(r)) // 2)))),
    "all-but-cpu0-offline": lambda r: take_offline(r, {0}),
    "cpu1-offline": lambda r: take_offline(r, set(_present(r)) - {1}),
    "random-offline": lambda r: take_offline(r, {0} | {i for i in _present(r) if random.Random(i * 31).random() < .5}),
    "no-cpufreq": lambda r: [shutil.rmtree(d / "cpufreq", ignore_errors=True)
                             for d in (r / "sys/devices/system/cpu").glob("cpu[0-9]*")],
    "no-topology": lambda r: [shutil.rmtree(d / "topology", ignore_errors=True)
                              for d in (r / "sys/devices/system/cpu").glob("cpu[0-9]*")],
    "no-cpuinfo": lambda r: (r / "proc/cpuinfo").unlink(missing_ok=True),
}
# Where a mutation removes the only file that names the chip rather than its kernel platform, and why.
PLATFORM_ONLY = {
    ("no-cpuinfo", "alcatel-revvl"): "only the Hardware line says MT6738; ro.board.platform names the MT6750 platform",
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_less_information_never_makes_a_wrong_answer(mutation, tmp_path):
    wrong = {}
    for device in DEVICES:
        full = observed(probe(FIXTURES / device, measure_bandwidth=False))
        root = tmp_path / device
        shutil.copytree(FIXTURES / device, root)
        MUTATIONS[mutation](root)
        got = observed(probe(root, measure_bandwidth=False))
        bad = {k: (full[k], got[k]) for k in ("processors", "cores", "clusters", "soc")
               if not no_worse(k, got[k], full[k])}
        if ("soc" in bad) and (mutation, device) in PLATFORM_ONLY:
            del bad["soc"]
        if bad:
            wrong[device] = bad
    assert not wrong, f"{mutation}: (full tree, mutated) {json.dumps(wrong)}"


def test_the_property_test_catches_a_wrong_answer(tmp_path, monkeypatch):
    """The check above is not vacuous: a probe that drops the offline cores' cluster is caught."""
    assert not no_worse("clusters", [("cortex-a53", 8)], [("cortex-a53", 4), ("cortex-a53", 4)])
    assert not no_worse("soc", "MediaTek MT6750", "MediaTek MT6738")
    assert not no_worse("processors", 4, 8)
    assert no_worse("clusters", [(None, 4), ("cortex-a53", 4)], [("cortex-a57", 4), ("cortex-a53", 4)])
