"""Core designs: an ARM MIDR or an x86 family/model → the microarchitecture, named as pytorch/cpuinfo names it.

`score` orders core designs by size (big cores first), the way cluster lists are ordered.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Midr:
    """The ARM Main ID Register's fields, as /proc/cpuinfo prints them."""

    implementer: int
    variant: int
    part: int
    revision: int = 0


ARM_VENDORS = {0x41: "arm", 0x42: "broadcom", 0x43: "cavium", 0x48: "huawei", 0x4E: "nvidia", 0x50: "apm",
               0x51: "qualcomm", 0x53: "samsung", 0x56: "marvell", 0x61: "apple", 0x69: "intel", 0xC0: "ampere"}

# (implementer, part) → core design. Parts whose name depends on the variant are decided in arm_core().
ARM_PARTS: dict[tuple[int, int], str] = {
    (0x41, 0xC05): "cortex-a5", (0x41, 0xC07): "cortex-a7", (0x41, 0xC08): "cortex-a8",
    (0x41, 0xC09): "cortex-a9", (0x41, 0xC0C): "cortex-a12", (0x41, 0xC0D): "cortex-a12",
    (0x41, 0xC0E): "cortex-a17", (0x41, 0xC0F): "cortex-a15",
    (0x41, 0xD01): "cortex-a32", (0x41, 0xD02): "cortex-a34", (0x41, 0xD03): "cortex-a53",
    (0x41, 0xD04): "cortex-a35", (0x41, 0xD06): "cortex-a65", (0x41, 0xD07): "cortex-a57",
    (0x41, 0xD08): "cortex-a72", (0x41, 0xD09): "cortex-a73", (0x41, 0xD0A): "cortex-a75",
    (0x41, 0xD0B): "cortex-a76", (0x41, 0xD0C): "neoverse-n1", (0x41, 0xD0D): "cortex-a77",
    (0x41, 0xD0E): "cortex-a76", (0x41, 0xD40): "neoverse-v1", (0x41, 0xD41): "cortex-a78",
    (0x41, 0xD44): "cortex-x1", (0x41, 0xD46): "cortex-a510", (0x41, 0xD47): "cortex-a710",
    (0x41, 0xD48): "cortex-x2", (0x41, 0xD49): "neoverse-n2", (0x41, 0xD4A): "neoverse-e1",
    (0x41, 0xD4B): "cortex-a78", (0x41, 0xD4C): "cortex-x1", (0x41, 0xD4D): "cortex-a715",
    (0x41, 0xD4E): "cortex-x3", (0x41, 0xD4F): "neoverse-v2", (0x41, 0xD80): "cortex-a520",
    (0x41, 0xD81): "cortex-a720", (0x41, 0xD82): "cortex-x4", (0x41, 0xD85): "cortex-x925",
    (0x41, 0xD87): "cortex-a725",
    (0x42, 0x00F): "brahma-b15", (0x42, 0x100): "brahma-b53", (0x42, 0x516): "thunderx2",
    (0x43, 0x0A0): "thunderx", (0x43, 0x0A1): "thunderx", (0x43, 0x0A2): "thunderx", (0x43, 0x0A3): "thunderx",
    (0x43, 0x0AF): "thunderx2",
    (0x48, 0xD01): "taishan-v110", (0x48, 0xD40): "cortex-a76",
    (0x4E, 0x000): "denver", (0x4E, 0x003): "denver2", (0x4E, 0x004): "carmel",
    (0x50, 0x000): "xgene",
    (0x51, 0x00F): "scorpion", (0x51, 0x02D): "scorpion", (0x51, 0x04D): "krait", (0x51, 0x06F): "krait",
    (0x51, 0x201): "kryo", (0x51, 0x205): "kryo", (0x51, 0x211): "kryo",
    (0x51, 0x800): "cortex-a73", (0x51, 0x801): "cortex-a53", (0x51, 0x802): "cortex-a75",
    (0x51, 0x803): "cortex-a55r0", (0x51, 0x804): "cortex-a76", (0x51, 0x805): "cortex-a55",
    (0x51, 0xC00): "falkor", (0x51, 0xC01): "saphira",
    (0x53, 0x002): "meerkat-m3", (0x53, 0x003): "meerkat-m4", (0x53, 0x004): "exynos-m5",
    (0x61, 0x022): "firestorm", (0x61, 0x023): "icestorm", (0x61, 0x024): "firestorm", (0x61, 0x025): "icestorm",
    (0x61, 0x028): "firestorm", (0x61, 0x029): "icestorm", (0x61, 0x032): "avalanche", (0x61, 0x033): "blizzard",
    (0xC0, 0xAC3): "ampere-1", (0xC0, 0xAC4): "ampere-1a",
    (0x56, 0x581): "pj4", (0x56, 0x584): "pj4",
}
# ARM's own older families, by the part number's top digit (cpuinfo decodes them so).
ARM_FAMILIES = {0x7: "arm7", 0x9: "arm9", 0xB: "arm11"}

# Core design → size, for ordering clusters: big cores first. Unknown designs sit in the middle.
_SCORES = {
    1: ("cortex-a5", "cortex-a7", "cortex-a32", "cortex-a34", "cortex-a35", "cortex-a53", "cortex-a55r0",
        "cortex-a55", "cortex-a510", "cortex-a520", "brahma-b53", "icestorm", "blizzard", "saltwell",
        "bonnell", "silvermont", "airmont", "goldmont", "goldmont-plus", "tremont", "gracemont"),
    2: ("cortex-a8", "cortex-a9", "cortex-a12", "cortex-a17", "scorpion", "krait", "cortex-a65", "neoverse-e1"),
    3: ("cortex-a15", "cortex-a57", "cortex-a72", "cortex-a73", "cortex-a75", "kryo", "mongoose-m1",
        "mongoose-m2", "denver", "denver2", "thunderx", "xgene", "brahma-b15", "falkor", "saphira"),
    4: ("cortex-a76", "cortex-a77", "cortex-a78", "cortex-a710", "cortex-a715", "cortex-a720", "cortex-a725",
        "meerkat-m3", "meerkat-m4", "exynos-m5", "neoverse-n1", "neoverse-n2", "carmel", "thunderx2",
        "taishan-v110", "ampere-1", "ampere-1a"),
    5: ("cortex-x1", "cortex-x2", "cortex-x3", "cortex-x4", "cortex-x925", "neoverse-v1", "neoverse-v2",
        "firestorm", "avalanche"),
}
SCORE = {core: score for score, cores in _SCORES.items() for core in cores}


def score(core: str | None) -> float:
    return SCORE.get(core or "", 2.5)


def arm_core(midr: Midr, features: set[str] | frozenset[str] = frozenset()) -> str | None:
    """The core design of an ARM MIDR, or None for a part nobody has named here. `features` (the
    /proc/cpuinfo Features) settles the one part two designs report."""
    key = (midr.implementer, midr.part)
    if key == (0x51, 0x00F) and "vfpv4" in features:  # Cortex-A5s report Scorpion's part; only they have VFPv4
        return "cortex-a5"
    if midr.implementer == 0x69 and (midr.part >> 8) in (2, 4, 6):  # Intel PXA 2xx/27x/3xx
        return "xscale"
    if midr.implementer == 0x41 and key not in ARM_PARTS and (midr.part >> 8) in ARM_FAMILIES:
        return ARM_FAMILIES[midr.part >> 8]
    if key == (0x41, 0xD05):  # Cortex-A55 r0 lacks the half-precision arithmetic of later revisions
        return "cortex-a55r0" if midr.variant == 0 else "cortex-a55"
    if key == (0x53, 0x001):  # Exynos M1 (variant 1) and M2 (variant 4) share a part number
        return "mongoose-m2" if midr.variant >= 4 else "mongoose-m1"
    return ARM_PARTS.get(key)


# Intel family 6 models → core design.
INTEL_MODELS: dict[int, str] = {
    **dict.fromkeys((0x1C, 0x26), "bonnell"), **dict.fromkeys((0x27, 0x35, 0x36), "saltwell"),
    **dict.fromkeys((0x37, 0x4A, 0x4D, 0x5A, 0x5D), "silvermont"), **dict.fromkeys((0x4C, 0x75), "airmont"),
    **dict.fromkeys((0x5C, 0x5F), "goldmont"), 0x7A: "goldmont-plus",
    **dict.fromkeys((0x86, 0x96, 0x9C), "tremont"), **dict.fromkeys((0xBE,), "gracemont"),
    **dict.fromkeys((0x1A, 0x1E, 0x1F, 0x2E), "nehalem"), **dict.fromkeys((0x25, 0x2C, 0x2F), "westmere"),
    **dict.fromkeys((0x2A, 0x2D), "sandy-bridge"), **dict.fromkeys((0x3A, 0x3E), "ivy-bridge"),
    **dict.fromkeys((0x3C, 0x3F, 0x45, 0x46), "haswell"), **dict.fromkeys((0x3D, 0x47, 0x4F, 0x56), "broadwell"),
    **dict.fromkeys((0x4E, 0x5E, 0x55, 0x8E, 0x9E, 0xA5, 0xA6), "sky-lake"), 0x66: "palm-cove",
    **dict.fromkeys((0x6A, 0x6C, 0x7D, 0x7E), "sunny-cove"), **dict.fromkeys((0x8C, 0x8D), "willow-cove"),
    **dict.fromkeys((0x8F, 0x97, 0x9A, 0xB7, 0xBA, 0xBF, 0xCF), "golden-cove"),
}


def x86_core(vendor: str | None, family: int | None, model: int | None) -> str | None:
    if family is None or model is None:
        return None
    if vendor == "intel" and family == 6:
        return INTEL_MODELS.get(model)
    if vendor in ("amd", "hygon"):
        if family == 0x17:
            return "zen2" if model >= 0x30 else "zen"
        if family == 0x19:
            return "zen4" if 0x10 <= model <= 0x1F or 0x60 <= model <= 0x7F or 0xA0 <= model else "zen3"
        if family == 0x1A:
            return "zen5"
    return None
