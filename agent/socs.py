"""The SoC a device is built on: its name from whatever the system says, and the core layout of known SoCs.

Sources, first that decodes wins: Android's ro.chipname, /proc/cpuinfo's Hardware line, ro.board.platform,
ro.mediatek.platform, ro.product.board, ro.arch, ro.hardware, /sys/devices/soc0/machine, the device tree's
model and compatible strings; on x86 tablets, the CPU's model name (an Atom is its own SoC). Names follow
pytorch/cpuinfo: "Qualcomm MSM8998", "Qualcomm Snapdragon 845", "Samsung Exynos 7420", "MediaTek MT6738",
"HiSilicon Kirin 970", "Spreadtrum SC7730SE", ...
"""

from __future__ import annotations

import re

# HiSilicon part numbers → Kirin names.
KIRIN = {"hi3620": "K3V2", "hi6620oem": "Kirin 910T", "hi6620": "Kirin 910", "hi3630": "Kirin 920",
         "hi3635": "Kirin 930", "hi3650": "Kirin 950", "hi3660": "Kirin 960", "hi3670": "Kirin 970",
         "hi3680": "Kirin 980", "hi3690": "Kirin 990", "hi6210sft": "Kirin 620", "hi6220": "Kirin 620",
         "hi6250": "Kirin 650", "hi6260": "Kirin 710"}
# Names that are not part numbers but that one SoC reports.
ALIASES = {"gs702a": "Actions ATM7029", "gs702c": "Actions ATM7029B", "gs705a": "Actions ATM7059A",
           "manta": "Samsung Exynos 5250", "tegra3": "Nvidia Tegra T30", "tegra4": "Nvidia Tegra T114",
           # Samsung's S5PC110 was renamed Exynos 3110 (Galaxy S, Nexus S report the old name)
           "s5pc110": "Samsung Exynos 3110", "s5pv210": "Samsung Exynos 3110",
           # Xiaomi's in-house Surge S1 reports its board's code name
           "song": "Pinecone Surge S1",
           # platform and board code names that name one chip (pytorch/cpuinfo's special tables)
           "k3v2oem1": "HiSilicon K3V2", "k3v200": "HiSilicon K3V2", "beethoven": "HiSilicon Kirin 950",
           "montblanc": "NovaThor U8500", "mp523x": "Renesas MP5232", "rk322x": "Rockchip RK3229",
           "hws7701u": "Rockchip RK3168", "k00f": "Rockchip RK3188", "t7h": "Rockchip RK3066",
           "tuna": "Texas Instruments OMAP4460", "grouper": "Nvidia Tegra T30L", "flounder": "Nvidia Tegra T132",
           "dragon": "Nvidia Tegra T210", "g2mv": "Nvidia Tegra SL460N",
           "sailfish": "Qualcomm MSM8996PRO", "marlin": "Qualcomm MSM8996PRO",
           "meson3": "Amlogic AML8726-M", "meson6": "Amlogic AML8726-MX", "meson8": "Amlogic S805",
           "gxbaby": "Amlogic S905", "gxl": "Amlogic S905X", "gxm": "Amlogic S912"}
# Allwinner family code → name, by the number of cores where one code covers two chips.
ALLWINNER = {"sun4i": {0: "A10"}, "sun5i": {0: "A13"}, "sun6i": {0: "A31"}, "sun7i": {0: "A20"},
             "sun8i": {2: "A23", 4: "A33", 8: "A83T", 0: "A33"}, "sun9i": {0: "A80"}, "sun50iw1p1": {0: "A64"}}
TEGRA = {"tegra210": "T210", "tegra132": "T132", "tegra124": "T124", "tegra114": "T114", "tegra186": "T186",
         "tegra194": "T194", "tegra234": "T234"}
# (pattern over the lower-cased text, vendor, prefix of the part number it captures)
PART_NUMBERS = [
    (r"\bmt\s*(\d{4}[a-z]*)", "MediaTek", "MT"), (r"\bkirin\s*(\d{3}[a-z]?)\b", "HiSilicon", "Kirin "),
    (r"\blc(\d{4})\b", "Leadcore", "LC"), (r"\brk\s*(\d{4})\b", "Rockchip", "RK"),
    (r"\bbcm\s*(2835|2836|2837|2711|2712)\b", "Broadcom", "BCM"), (r"\batm\s*(\d{4}[a-z]?)\b", "Actions", "ATM"),
    (r"\bpxa\s*(\d{3,4}[a-z]?)\b", "Marvell", "PXA"), (r"\bsurge\s*s(\d+)\b", "Pinecone", "Surge S"),
    (r"\bomap\s*(\d{4})\b", "Texas Instruments", "OMAP"),
]
# An Atom's part number as Intel writes it: "x5-Z8350", "Z3745", "C3230".
ATOM = re.compile(r"\batom\(tm\)\s*(?:cpu\s+|processor\s+)?(?:([a-z]\d)[ -])?([zcx]\d{4}[a-z]?)\b")


def decode(text: str | None, cores: int | None = None, exact: bool = True) -> str | None:
    """One string (a property, the Hardware line, a device-tree model) → an SoC name, or None.

    Where one name covers chips told apart by their number of cores, `cores` decides; with `exact` False
    it is only a lower bound (processors seen online), and a name it cannot settle is not given."""
    if not text:
        return None
    low = text.strip().lower()
    if low in ALIASES:
        return ALIASES[low]
    m = re.search(r"\b(?:qualcomm\b.*?\b|qct\s+)?(msm|apq|qsd|mdm|sda|sdm|sm|qcs|qcm)\s*(\d{3,4})([a-z0-9-]*)", low)
    if m and (m.group(1) not in ("sm", "sda", "qcs", "qcm") or len(m.group(2)) == 4 or "qualcomm" in low):
        family, number, suffix = m.group(1).upper(), m.group(2), m.group(3).upper()
        if family == "SDM":
            return f"Qualcomm Snapdragon {number}"
        suffix = re.sub(r"(MSM|APQ)\d{4}$", "", suffix)  # the part number written twice ("MSM8916MSM8916")
        return f"Qualcomm {family}{number}{suffix if suffix.replace('-', '').isalnum() else ''}"
    m = re.search(r"\bsmdk4x12\b", low)  # one board name for the dual- and quad-core Exynos 4
    if m:
        return {2: "Samsung Exynos 4212", 4: "Samsung Exynos 4412"}.get(cores or 0) if exact else None
    m = re.search(r"(?:exynos|universal|smdk)\s*(\d{4})", low)
    if m:
        return f"Samsung Exynos {m.group(1)}"
    if low in KIRIN:
        return f"HiSilicon {KIRIN[low]}"
    if "spreadtrum" in low or low.startswith(("sc", "sp")):
        m = re.search(r"\bs[cp](\d{4}[a-z]*)", low)
        if m:
            return f"Spreadtrum SC{m.group(1).upper()}"
    m = re.search(r"\b(sun\d+i(?:w\d+p\d+)?)\b", low)
    if m and m.group(1) in ALLWINNER:
        names = ALLWINNER[m.group(1)]
        if len(names) > 1 and (cores not in names or not exact):
            return None  # one code, several chips: only an exact count of cores tells which
        return f"Allwinner {names.get(cores or 0, names.get(0))}"
    m = re.search(r"\b(tegra\d{3})", low)
    if m and m.group(1) in TEGRA:
        return f"Nvidia Tegra {TEGRA[m.group(1)]}"
    m = ATOM.search(low)
    if m:
        return "Intel Atom " + (f"{m.group(1)}-" if m.group(1) else "") + m.group(2).upper()
    for pattern, vendor, prefix in PART_NUMBERS:
        m = re.search(pattern, low)
        if m:
            return f"{vendor} {prefix}{m.group(1).upper()}"
    return None


# Hardware lines that name the kernel's platform rather than the chip: a Raspberry Pi's kernel says BCM2835
# whatever its SoC (answered last, as the Pi 1 and Zero do have one); Spreadtrum's "sc8830" kernel runs the
# SC7730 and SC9830 families too (never answered from that line alone).
VAGUE = {"Broadcom BCM2835": True, "Spreadtrum SC8830": False}
HARDWARE = "/proc/cpuinfo Hardware"
ANDROID_PROPERTIES = ("ro.chipname", "ro.hardware.chipname", HARDWARE, "ro.product.board", "ro.board.platform",
                      "ro.mediatek.platform", "ro.arch", "ro.hardware")
# Where sources name different chips of one vendor, which to believe, first to last (pytorch/cpuinfo's
# vendor-specific disambiguation); a vendor not listed gives no answer then.
PRIORITY = {
    "Qualcomm": ("ro.hardware.chipname", "ro.chipname", HARDWARE, "ro.product.board", "ro.board.platform"),
    "MediaTek": ("ro.chipname", HARDWARE, "ro.product.board", "ro.board.platform", "ro.mediatek.platform"),
    "HiSilicon": (HARDWARE, "ro.product.board", "ro.board.platform"),
    "Amlogic": (HARDWARE, "ro.board.platform"),
    "Marvell": ("ro.chipname", "ro.product.board", HARDWARE),
    "Rockchip": ("ro.product.board", HARDWARE, "ro.board.platform"),
    "Spreadtrum": ("ro.chipname", "ro.product.board", HARDWARE, "ro.board.platform"),
}
# Chips that report themselves as a sibling with another number of cores: (reported, cores it has, the
# chip with `cores` instead) — kernels' common bugs, as pytorch/cpuinfo fixes them.
MISREPORTED = [
    ("Qualcomm MSM8960", 2, 4, "Qualcomm APQ8064"), ("Qualcomm MSM8996", 4, 8, "Qualcomm MSM8994"),
    ("Qualcomm MSM8610", 2, 4, "Qualcomm MSM8612"), ("Samsung Exynos 5420", 4, 6, "Samsung Exynos 5260"),
    ("Samsung Exynos 7580", 8, 4, "Samsung Exynos 7578"), ("MediaTek MT6752", 8, 4, "MediaTek MT6732"),
    ("Rockchip RK3288", 4, 6, "Rockchip RK3399"),
]
RENAMED = {"Samsung Exynos 4410": "Samsung Exynos 4412", "Qualcomm MSM8976SG": "Qualcomm MSM8976PRO",
           # the MSM8996 Pro that says only "PRO" is taken for the AB bin, as cpuinfo takes it
           "Qualcomm MSM8996PRO": "Qualcomm MSM8996PRO-AB"}
_NAME = re.compile(r"^(Texas Instruments|\S+) (\D*?)(\d+)(.*)$")


def fixup(name: str | None, cores: int | None, exact: bool = True) -> str | None:
    """A decoded name corrected for the chips that misreport themselves; None where the count of cores
    that would tell is not known (or, with `exact` False, only a lower bound)."""
    if name is None:
        return None
    name = RENAMED.get(name, name)
    turbo = re.fullmatch(r"(MediaTek MT\d{4})T(?:URBO|RUBO)", name)
    if turbo:
        return turbo.group(1) + "T"
    for reported, own, other, alternative in MISREPORTED:
        if name == reported:
            # an exact count names one of the two; a lower bound only where one of them has too few cores
            fits = [(n, chip) for n, chip in ((own, name), (other, alternative))
                    if cores is not None and (n == cores if exact else n >= cores)]
            return fits[0][1] if len(fits) == 1 else None
    return name


def _label(key: str) -> str:
    return key if key == HARDWARE else f"getprop {key}"


def _parts(name: str) -> tuple[str, str, str, str] | None:
    m = _NAME.match(name)
    return m.groups() if m else None  # (vendor, series, model, suffix)


def soc_name(hardware: str | None, properties: dict[str, str], other: list[tuple[str, str | None]],
             cores: int | None, exact: bool = True) -> tuple[str | None, str | None]:
    """(the SoC's name, which source said it), as pytorch/cpuinfo decides it on Android: every property and
    the Hardware line decoded and corrected (MISREPORTED); sources of different vendors: no answer; a bin
    suffix one source gives (MSM8974PRO-AC) completes the same series' shorter one in another; sources that
    still differ: the vendor's order of belief (PRIORITY). Without any of these (Linux boards), `other`
    ((label, text) pairs: soc0, the device tree, an x86 model name) in order. A Hardware line in VAGUE comes
    last, if at all."""
    decoded: dict[str, tuple[str, str]] = {}
    vague = None
    for key in ANDROID_PROPERTIES:
        text = hardware if key == HARDWARE else properties.get(key)
        raw = decode(text, cores, exact)
        if raw in VAGUE:
            vague = (raw, f"{_label(key)} = {text.strip()!r}") if VAGUE[raw] else None
            continue
        name = fixup(raw, cores, exact)
        if name:
            decoded[key] = (name, f"{_label(key)} = {text.strip()!r}")
    if decoded:
        if len({name.split(" ")[0] for name, _ in decoded.values()}) > 1:
            return None, None  # sources of different vendors: nothing to believe
        parts = {key: _parts(name) for key, (name, _) in decoded.items()}
        for a in decoded:  # the longer of two suffixes where one extends the other, within a series
            for b in decoded:
                pa, pb = parts[a], parts[b]
                if pa and pb and pa[:2] == pb[:2] and len(pb[3]) > len(pa[3]) and pb[3].startswith(pa[3]):
                    parts[a] = (*pa[:3], pb[3])
                    decoded[a] = (f"{pa[0]} {pa[1]}{pa[2]}{pb[3]}", decoded[a][1] + f" (bin from {b})")
        names = {name for name, _ in decoded.values()}
        if len(names) == 1:
            return next(iter(decoded.values()))
        order = PRIORITY.get(next(iter(names)).split(" ")[0])
        if not order:
            return None, None
        key = next((k for k in order if k in decoded), None)
        return decoded[key] if key else (None, None)
    for label, text in other:
        found = fixup(decode(text, cores, exact), cores, exact)
        if found:
            return found, f"{label} = {text.strip()!r}"
    return vague or (None, None)


def parse_getprop(text: str) -> dict[str, str]:
    """`[key]: [value]` lines, as Android's getprop prints them."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M)}


# Core layouts of SoCs, big cores first: (core, cores) per cluster. Used when the system shows only part of
# its processors (offline cores are missing from /proc/cpuinfo, and often from /sys too).
LAYOUTS: dict[str, list[tuple[str, int]]] = {
    "Qualcomm MSM8660": [("scorpion", 2)], "Qualcomm MSM8960": [("krait", 2)], "Qualcomm APQ8064": [("krait", 4)],
    "Qualcomm MSM8974": [("krait", 4)], "Qualcomm APQ8084": [("krait", 4)], "Qualcomm MSM8226": [("cortex-a7", 4)],
    "Qualcomm MSM8916": [("cortex-a53", 4)], "Qualcomm MSM8939": [("cortex-a53", 4), ("cortex-a53", 4)],
    "Qualcomm MSM8937": [("cortex-a53", 4), ("cortex-a53", 4)], "Qualcomm MSM8953": [("cortex-a53", 4), ("cortex-a53", 4)],
    "Qualcomm MSM8992": [("cortex-a57", 2), ("cortex-a53", 4)], "Qualcomm MSM8994": [("cortex-a57", 4), ("cortex-a53", 4)],
    "Qualcomm MSM8996": [("kryo", 2), ("kryo", 2)], "Qualcomm MSM8996PRO-AB": [("kryo", 2), ("kryo", 2)],
    "Qualcomm MSM8998": [("cortex-a73", 4), ("cortex-a53", 4)],
    "Qualcomm Snapdragon 845": [("cortex-a75", 4), ("cortex-a55r0", 4)],
    "Samsung Exynos 5250": [("cortex-a15", 2)], "Samsung Exynos 5422": [("cortex-a15", 4), ("cortex-a7", 4)],
    "Samsung Exynos 7420": [("cortex-a57", 4), ("cortex-a53", 4)], "Samsung Exynos 7578": [("cortex-a53", 4)],
    "Samsung Exynos 7580": [("cortex-a53", 4), ("cortex-a53", 4)],
    "Samsung Exynos 7885": [("cortex-a73", 2), ("cortex-a53", 6)],
    "Samsung Exynos 8890": [("mongoose-m1", 4), ("cortex-a53", 4)],
    "Samsung Exynos 8895": [("mongoose-m2", 4), ("cortex-a53", 4)],
    "HiSilicon Kirin 910T": [("cortex-a9", 4)], "HiSilicon Kirin 650": [("cortex-a53", 4), ("cortex-a53", 4)],
    "HiSilicon Kirin 950": [("cortex-a72", 4), ("cortex-a53", 4)],
    "HiSilicon Kirin 960": [("cortex-a73", 4), ("cortex-a53", 4)],
    "HiSilicon Kirin 970": [("cortex-a73", 4), ("cortex-a53", 4)],
    "MediaTek MT6595": [("cortex-a17", 4), ("cortex-a7", 4)], "MediaTek MT6735": [("cortex-a53", 4)],
    "MediaTek MT6737": [("cortex-a53", 4)], "MediaTek MT6750": [("cortex-a53", 4), ("cortex-a53", 4)],
    "MediaTek MT6755": [("cortex-a53", 4), ("cortex-a53", 4)],
    "MediaTek MT6771": [("cortex-a73", 4), ("cortex-a53", 4)],
    "MediaTek MT6797": [("cortex-a72", 2), ("cortex-a53", 4), ("cortex-a53", 4)],
    "MediaTek MT6797T": [("cortex-a72", 2), ("cortex-a53", 4), ("cortex-a53", 4)],
    "Spreadtrum SC7730S": [("cortex-a7", 4)], "Spreadtrum SC7730SE": [("cortex-a7", 4)],
    "Allwinner A33": [("cortex-a7", 4)], "Allwinner A23": [("cortex-a7", 2)],
    "Actions ATM7029": [("cortex-a5", 4)], "Actions ATM7029B": [("cortex-a5", 4)],
    "Leadcore LC1860": [("cortex-a7", 4), ("cortex-a7", 1)],
    "Nvidia Tegra T210": [("cortex-a57", 4)], "Broadcom BCM2711": [("cortex-a72", 4)],
    "Broadcom BCM2712": [("cortex-a76", 4)], "Broadcom BCM2837": [("cortex-a53", 4)],
    "Rockchip RK3288": [("cortex-a17", 4)], "Rockchip RK3399": [("cortex-a72", 2), ("cortex-a53", 4)],
}


def layout(soc: str | None) -> list[tuple[str, int]] | None:
    return LAYOUTS.get(soc or "")
