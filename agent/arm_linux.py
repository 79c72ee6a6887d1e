"""ARM processors on Linux and Android: which logical processors exist, how they form clusters, and which
core design each cluster has, decoded the way pytorch/cpuinfo decodes them (src/arm/linux/init.c,
clusters.c, midr.c), re-expressed here in Python.

Sources, in cpuinfo's order and with its fallbacks:
1. `cpu/possible` and `cpu/present` say which processors exist (both when both are readable; either
   alone otherwise; only where neither is, the processors /proc/cpuinfo lists).
2. /proc/cpuinfo gives each listed processor's MIDR fields (implementer, variant, part, revision,
   architecture). Fields belong to the processor whose `processor` line came last, blank lines or not: an
   old kernel prints every `processor` line first and one set of fields after them.
3. cpufreq gives each processor's minimum and maximum clock; `topology/physical_package_id` (not -1) and
   `topology/core_siblings_list` the clusters the kernel knows. Beyond cpuinfo: one siblings list whose
   members report different designs or clocks is split (DynamIQ kernels list every core as one package).
4. Processors no siblings list places are clustered by the usual layouts (4+4+2 of ten, 4+4 of eight,
   4+2 of six) when what is known of them agrees and something shows there is more than one cluster,
   else by a sequential scan that starts a new cluster wherever a known clock or MIDR field changes.
5. A cluster whose MIDR nobody reported takes it from the SoC's known layout (socs.LAYOUTS, what only a
   table can know), else, on a two-cluster system with one MIDR known, the LITTLE core that design is
   paired with, else the MIDR of the cluster before it.
6. Beyond cpuinfo, which always answers: clusters that rest on a guess (the usual layout; processors
   nothing describes joined to the cluster before them; a kernel with no siblings lists at all) stand only
   if the SoC's known layout agrees, give way to it where it does not, and are null where there is none
   and undescribed processors were placed: less specific, never wrong.
Clusters are ordered as cpuinfo orders processors: bigger core design first, then faster clock, then the
later cluster.

Each step records which source decided it (`Decoded.sources`), for `agent spec --explain`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from edgeatlas.agent.cpus import Midr, arm_core

FIELDS = ("implementer", "variant", "part", "revision", "architecture")
# Processors beyond this are not read: no kernel configures more, and a hostile tree must not make us loop.
MAX_PROCESSORS = 4096
# Usable processors → cluster sizes, in processor order (cpuinfo's heuristic for kernels that report only
# the online cluster's topology).
USUAL_LAYOUTS = {10: (4, 4, 2), 8: (4, 4), 6: (4, 2)}
# A big core design → the LITTLE core it is paired with (cpuinfo's midr_little_core_for_big), by name.
LITTLE_FOR_BIG = {"cortex-a75": "cortex-a55r0", "cortex-a73": "cortex-a53", "cortex-a72": "cortex-a53",
                  "cortex-a57": "cortex-a53", "mongoose-m1": "cortex-a53", "mongoose-m2": "cortex-a53",
                  "cortex-a17": "cortex-a7", "cortex-a15": "cortex-a7", "denver2": "cortex-a57"}


@dataclass
class Processor:
    """One logical processor as the files describe it; None: not said anywhere."""

    index: int
    listed: bool = False  # has a `processor` line (or fields) in /proc/cpuinfo
    midr: dict[str, int] = field(default_factory=dict)  # the MIDR fields /proc/cpuinfo gave
    features: set[str] = field(default_factory=set)
    min_khz: int | None = None
    max_khz: int | None = None
    package_id: int | None = None
    clustered: bool = False  # placed in a cluster by a siblings list or a heuristic
    leader: int = 0
    core: str | None = None  # the core design, once decided (for cluster leaders)
    core_source: str | None = None

    @property
    def full_midr(self) -> bool:
        return all(k in self.midr for k in FIELDS)

    def as_midr(self) -> Midr | None:
        if "implementer" not in self.midr or "part" not in self.midr:
            return None
        return Midr(self.midr["implementer"], self.midr.get("variant", 0), self.midr["part"],
                    self.midr.get("revision", 0))


@dataclass
class Decoded:
    processors: list[Processor]  # the usable ones, by index
    clusters: list[dict] | None  # {"core", "cores", "max_ghz"}, big first
    features: set[str]
    sources: dict[str, str]


def parse_proc_cpuinfo(text: str, count: int) -> tuple[dict[int, dict], bool]:
    """(processor index → {"listed", midr fields, "features"}, whether any field was seen).

    As cpuinfo's parser: a key is the text before ':' without trailing blanks; `processor` moves the
    current index (fields before any such line belong to processor 0); blank lines change nothing."""
    per: dict[int, dict] = {}
    current = 0
    seen = False
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.rstrip(" \t"), value.strip()
        if not sep or not key or not value:
            continue
        if key == "processor":
            digits = value.split()[0] if value.split() else ""
            if digits.isdigit():
                current = int(digits)
                if current < count:
                    per.setdefault(current, {})["listed"] = True
            continue
        target = per.setdefault(current, {}) if current < count else {}
        parsed = _midr_field(key, value)
        if parsed:
            target[parsed[0]] = parsed[1]
        elif key == "Features":
            target["features"] = set(value.split())
        else:
            continue
        target["listed"] = True
        seen = True
    return per, seen


def _midr_field(key: str, value: str) -> tuple[str, int] | None:
    name = {"CPU implementer": "implementer", "CPU implementor": "implementer", "CPU variant": "variant",
            "CPU part": "part", "CPU revision": "revision", "CPU architecture": "architecture"}.get(key)
    if name is None:
        return None
    try:
        if name == "architecture":
            if value.startswith("AArch64"):
                return name, 8
            digits = "".join(c for c in value.split()[0] if c.isdigit()) if value.split() else ""
            number = int(digits[:2]) if digits else 0
            return (name, number) if number else None
        if name == "revision":
            return name, int(value.split()[0], 0)
        return name, int(value.split()[0], 16)
    except (ValueError, IndexError):
        return None


def decode(read: Callable[[str], str | None], read_int: Callable[[str], int | None],
           cpu_list: Callable[[str], list[int] | None], layout: Callable[[int], list[tuple[str, int]] | None]
           ) -> Decoded:
    """Everything above, over a device's files (`read` and friends take paths relative to its root).

    `layout(usable processors)` gives the SoC's known cluster layout (big first), decoded once the count
    of processors is known, or None."""
    sources: dict[str, str] = {}
    base = "sys/devices/system/cpu"
    possible, present = cpu_list(f"{base}/possible"), cpu_list(f"{base}/present")
    kernel_max = read_int(f"{base}/kernel_max")
    limit = min(MAX_PROCESSORS, kernel_max + 1 if kernel_max is not None and kernel_max >= 0 else MAX_PROCESSORS)
    count = limit
    if present:
        count = min(count, max(present) + 1)
    if possible:
        count = min(count, max(possible) + 1)
    text = read("proc/cpuinfo") or ""
    per, seen = parse_proc_cpuinfo(text, count)
    if not present and not possible:
        count = min(limit, max(per) + 1) if per else (1 if seen else 0)
    procs = [Processor(i) for i in range(count)]
    for i, fields in per.items():
        if i < count:
            p = procs[i]
            p.listed = bool(fields.get("listed"))
            p.midr = {k: fields[k] for k in FIELDS if k in fields}
            p.features = fields.get("features", set())
    if present or possible:
        want = set(present or possible) & set(possible or present)
        usable = [p for p in procs if p.index in want]
        sources["processors"] = ("cpu/present ∩ cpu/possible" if present and possible else
                                 "cpu/present" if present else "cpu/possible")
    else:
        usable = [p for p in procs if p.listed]
        if usable:
            sources["processors"] = "/proc/cpuinfo processor lines (no cpu/present or cpu/possible)"
    features = set().union(*(p.features for p in usable)) if usable else set()
    for p in usable:
        p.max_khz = _positive(read_int(f"{base}/cpu{p.index}/cpufreq/cpuinfo_max_freq"))
        p.min_khz = _positive(read_int(f"{base}/cpu{p.index}/cpufreq/cpuinfo_min_freq"))
        package = read_int(f"{base}/cpu{p.index}/topology/physical_package_id")
        p.package_id = package if package is not None and package >= 0 else None  # -1: the kernel knows none
        p.leader = p.index
    by_index = {p.index: p for p in usable}
    for p in usable:  # cpuinfo's cluster_siblings_parser over core_siblings_list
        if p.package_id is None:
            continue
        siblings = cpu_list(f"{base}/cpu{p.index}/topology/core_siblings_list") or []
        p.clustered = True
        leader = p.leader
        for s in siblings:
            other = by_index.get(s)
            if other is None:
                continue
            leader = min(leader, other.leader)
            other.leader = leader
            other.clustered = True
        p.leader = leader
    for p in usable:  # propagate to the smallest leader
        if p.clustered and p.leader < p.index:
            p.leader = by_index[p.leader].leader
    if _split_mixed_packages(usable):
        sources["split"] = ("one siblings list held cores of different designs or clocks (a DynamIQ kernel "
                            "lists every core as one package): split by MIDR part and cpufreq maximum")
    clustered_by_kernel = sum(p.clustered for p in usable)
    guess = None
    if usable:
        sources["clusters"] = "topology/core_siblings_list"
    if clustered_by_kernel != len(usable):
        # The usual layouts are for kernels that describe only the online cluster: with no siblings list
        # and nothing that differs between processors, nothing says there is more than one cluster.
        evidence = clustered_by_kernel or len({(p.min_khz, p.max_khz) for p in usable if p.max_khz}) > 1 or len(
            {(p.midr.get("implementer"), p.midr.get("part")) for p in usable if "part" in p.midr}) > 1
        if evidence and _cluster_by_usual_layout(usable):
            sources["clusters"] = ("the usual layout of %d processors (%s), consistent with what is known"
                                   % (len(usable), "+".join(map(str, USUAL_LAYOUTS[len(usable)]))))
            guess = "usual"
        else:
            guess = "undescribed" if _cluster_by_sequential_scan(usable) else None if clustered_by_kernel else "scan"
            sources["clusters"] = ("a sequential scan: a new cluster wherever a known clock or MIDR field "
                                   "changes" + (" (siblings lists for some)" if clustered_by_kernel else ""))
    if not any(_described(p) for p in usable):
        # Nothing describes any processor (all offline, or a kernel that says nothing): how many clusters
        # there are is unknown.
        return Decoded(usable, None, features, {**sources, "clusters": "unknown: no processor described"})
    if "split" in sources:
        sources["clusters"] += "; " + sources.pop("split")
    clusters = _cluster_cores(usable, by_index, layout, sources)
    if guess:
        clusters = _check_guess(clusters, guess, layout(len(usable)), len(usable), sources)
    return Decoded(usable, clusters, features, sources)


def _check_guess(clusters: list[dict] | None, guess: str, known: list[tuple[str, int]] | None, count: int,
                 sources: dict[str, str]) -> list[dict] | None:
    """Clusters that rest on a guess (processors nothing describes joined to the one before them, or the
    usual layout) stand if the SoC's known layout agrees; where it disagrees the layout wins; with no
    layout, a cluster of undescribed processors is unknown, not guessed."""
    if known and sum(n for _, n in known) == count:
        if clusters and sorted((c["core"] or "", c["cores"]) for c in clusters) == sorted(known):
            sources["clusters"] += "; matches the SoC's known layout"
            return clusters
        sources["clusters"] = sources["cores"] = "the SoC's known layout (the files leave the clusters open)"
        return [{"core": core, "cores": n, "max_ghz": None} for core, n in known]
    if guess == "undescribed":
        sources["clusters"] = "unknown: processors nothing describes (offline) could belong to any cluster"
        return None
    return clusters


def _split_mixed_packages(usable: list[Processor]) -> bool:
    """A kernel cluster whose members report different core designs or clocks is several clusters (members
    that report neither join the first of them)."""
    split = False
    groups: dict[int, list[Processor]] = {}
    for p in usable:
        if p.clustered:
            groups.setdefault(p.leader, []).append(p)
    for members in groups.values():
        designs = {(p.midr["implementer"], p.midr["part"]) for p in members
                   if "implementer" in p.midr and "part" in p.midr}
        clocks = {p.max_khz for p in members if p.max_khz}
        if len(designs) < 2 and len(clocks) < 2:
            continue
        split = True

        def key(p: Processor) -> tuple | None:
            design = (p.midr.get("implementer"), p.midr.get("part")) if len(designs) > 1 else ()
            clock = p.max_khz if len(clocks) > 1 else 0
            return None if None in design or clock is None else (design, clock)

        leaders: dict[tuple, int] = {}
        for p in members:
            k = key(p)
            if k is not None:
                p.leader = leaders.setdefault(k, p.index)
        first = min(leaders.values())
        for p in members:
            if key(p) is None:
                p.leader = first
    return split


def _positive(value: int | None) -> int | None:
    return value if value and value > 0 else None


def _compatible(state: dict, p: Processor) -> bool:
    """Whether p's known clocks and MIDR fields agree with those collected in `state` (and collects them)."""
    known = {"min_khz": p.min_khz, "max_khz": p.max_khz, **p.midr}
    for key, value in known.items():
        if value is None:
            continue
        if key in state and state[key] != value:
            return False
    for key, value in known.items():
        if value is not None:
            state.setdefault(key, value)
    return True


def _cluster_by_usual_layout(usable: list[Processor]) -> bool:
    sizes = USUAL_LAYOUTS.get(len(usable))
    if not sizes:
        return False
    groups, start = [], 0
    for n in sizes:
        groups.append(usable[start:start + n])
        start += n
    for group in groups:
        head = group[0]
        if head.clustered:  # the kernel's cluster must be exactly this one
            if head.leader != head.index or any(not p.clustered or p.leader != head.index for p in group[1:]):
                return False
        else:
            state: dict = {}
            for p in group:
                if p is not head and p.clustered:
                    return False
                if not _compatible(state, p):
                    return False
    for group in groups:
        for p in group:
            p.leader, p.clustered = group[0].index, True
    return True


def _described(p: Processor) -> bool:
    return bool(p.midr or p.max_khz or p.min_khz or p.package_id is not None)


def _cluster_by_sequential_scan(usable: list[Processor]) -> bool:
    """Returns whether a processor nothing describes was put in another's cluster (a guess)."""
    state: dict = {}
    leader = None
    guessed = False
    for p in usable:
        if p.clustered:
            continue
        if leader is not None and _compatible(state, p):
            p.leader, p.clustered = leader, True
            guessed = guessed or not _described(p)
            continue
        leader, state = p.index, {}
        _compatible(state, p)
        p.leader, p.clustered = p.index, True
    return guessed


def _cluster_cores(usable: list[Processor], by_index: dict[int, Processor],
                   layout: Callable[[int], list[tuple[str, int]] | None], sources: dict[str, str]
                   ) -> list[dict] | None:
    """cpuinfo's detect_cluster_midr: each cluster leader's core design, then the clusters big first."""
    if not usable:
        return None
    leaders = [p for p in usable if p.leader == p.index]
    size = {p.index: 0 for p in leaders}
    listed = [p for p in usable if p.listed]
    with_midr = [p for p in usable if "implementer" in p.midr and "part" in p.midr]  # as reported
    for p in usable:
        size[p.leader] += 1
        leader = by_index[p.leader]
        if p is not leader:  # known bits flow to the leader
            leader.max_khz = leader.max_khz or p.max_khz
            if not leader.full_midr and p.full_midr:
                leader.midr = dict(p.midr)
    for p in leaders:
        if p.as_midr():
            p.core, p.core_source = arm_core(p.as_midr(), p.features), "MIDR in /proc/cpuinfo"
    known_leaders = [p for p in leaders if p.core_source]
    only_one_unattributable = (len(with_midr) == 1 and listed and listed[-1] is with_midr[0] and len(leaders) > 1)
    if only_one_unattributable or len(known_leaders) < len(leaders):
        # Some clusters have no MIDR of their own. (With one MIDR printed after every `processor` line,
        # nobody knows which processor it describes: it only tells one of the designs.)
        if only_one_unattributable:
            for p in leaders:
                p.core = p.core_source = None
        if not _cores_from_layout(leaders, size, layout(len(usable)), verify=not only_one_unattributable):
            big = arm_core(with_midr[-1].as_midr(), with_midr[-1].features) if with_midr else None
            if with_midr and not _cores_big_little(leaders, big, not only_one_unattributable):
                for p in leaders:  # sequential: a cluster takes the MIDR of the one before it
                    if p.core_source is None:
                        p.core, p.core_source = big, "the MIDR of the cluster before it (sequential)"
                        continue
                    big = p.core
    sources["cores"] = "; ".join(sorted({p.core_source for p in leaders if p.core_source})) or "unknown"
    ordered = sorted(leaders, key=lambda p: (-_score(p), -(p.max_khz or 0), -p.index))
    return [{"core": p.core, "cores": size[p.index],
             "max_ghz": round(p.max_khz / 1e6, 3) if p.max_khz else None} for p in ordered]


def _cores_from_layout(leaders: list[Processor], size: dict[int, int], layout: list[tuple[str, int]] | None,
                       verify: bool) -> bool:
    """The SoC's known layout (big first) against the clusters in processor order (LITTLE first)."""
    if not layout or len(layout) != len(leaders):
        return False
    expected = list(reversed(layout))
    if [n for _, n in expected] != [size[p.index] for p in leaders]:
        return False
    if verify and any(p.core_source and p.core != core for p, (core, _) in zip(leaders, expected)):
        return False
    for p, (core, _) in zip(leaders, expected):
        if not p.core_source:
            p.core, p.core_source = core, "the SoC's known core layout (socs.LAYOUTS)"
    return True


def _cores_big_little(leaders: list[Processor], big: str | None, verify: bool) -> bool:
    """Two clusters, one design known: it is the big one, and the other the LITTLE core it pairs with."""
    if len(leaders) != 2 or sum(1 for p in leaders if p.core_source) > 1 or big is None:
        return False
    little_leader = leaders[0]
    other = leaders[1]
    if little_leader.max_khz and other.max_khz and little_leader.max_khz > other.max_khz:
        little_leader = other
    little = LITTLE_FOR_BIG.get(big, big)
    if verify and any(p.core_source and p.core != (little if p is little_leader else big) for p in leaders):
        return False
    for p in leaders:
        if not p.core_source:
            p.core = little if p is little_leader else big
            p.core_source = "big.LITTLE pairing of the one known design"
    return True


# cpuinfo's midr_score_core: which cluster is bigger. Keyed by (implementer, part); names for the rest.
_SCORE_PARTS = {
    6: ((0x53, 0x003), (0x53, 0x004), (0x41, 0xD44), (0x41, 0xD48), (0x41, 0xD4C), (0x41, 0xD4E),
        (0x41, 0xD82), (0x41, 0xD85)),
    5: ((0x41, 0xD08), (0x41, 0xD09), (0x41, 0xD0A), (0x41, 0xD0B), (0x41, 0xD0D), (0x41, 0xD0E), (0x41, 0xD41),
        (0x41, 0xD47), (0x41, 0xD4B), (0x41, 0xD4D), (0x41, 0xD81), (0x41, 0xD87), (0x48, 0xD40), (0x4E, 0x003),
        (0x51, 0x205), (0x51, 0x800), (0x51, 0x802), (0x51, 0x804), (0x53, 0x001), (0x53, 0x002),
        (0x41, 0xC0F), (0x41, 0xC0E), (0x41, 0xC0D), (0x41, 0xC0C)),
    4: ((0x41, 0xD07),),
    2: ((0x41, 0xD06), (0x41, 0xD03), (0x41, 0xD05), (0x41, 0xD46), (0x41, 0xD80)),
    1: ((0x41, 0xD04), (0x41, 0xC07), (0x51, 0x805), (0x51, 0x803), (0x51, 0x801), (0x51, 0x211),
        (0x51, 0x201)),
}
SCORE_BY_PART = {part: score for score, parts in _SCORE_PARTS.items() for part in parts}
_SCORE_NAMES = {"cortex-a55r0": 2, "cortex-a55": 2, "cortex-a53": 2, "cortex-a35": 1, "cortex-a7": 1,
                "cortex-a57": 4, "cortex-a72": 5, "cortex-a73": 5, "cortex-a75": 5, "cortex-a15": 5,
                "cortex-a17": 5, "mongoose-m1": 5, "mongoose-m2": 5, "denver2": 5}


def _score(p: Processor) -> int:
    midr = p.as_midr()
    if midr is not None and p.core_source == "MIDR in /proc/cpuinfo":
        return SCORE_BY_PART.get((midr.implementer, midr.part), 3)
    return _SCORE_NAMES.get(p.core or "", 3)
