#!/usr/bin/env python3
"""Convert third-party HL7 v2 definitions into the compact set the hl7v2 crate embeds.

Run once by hand (not in CI); the output is committed as crates/hl7v2/data/definitions.json.

Inputs (both MIT-licensed; see crates/hl7v2/data/PROVENANCE.md):
  * npm `hl7-dictionary` 1.0.1: segments, fields and composite data types with lengths for
    v2.1 .. v2.7.1, and one (version-less) set of HL7 tables with values.
  * PyPI `hl7apy` 1.3.5: message structures with groups for every version, segments, fields
    and data types for v2.8 .. v2.8.2 (which hl7-dictionary lacks), and per-version tables
    for v2.3.1 .. v2.8.2.

Usage:
  mkdir -p /tmp/defs && cd /tmp/defs && npm install hl7-dictionary@1.0.1
  python3 -m venv venv && venv/bin/pip install hl7apy==1.3.5
  venv/bin/python convert_definitions.py /tmp/defs/node_modules/hl7-dictionary \
      ../data/definitions.json

Output layout (format 1), chosen so that shared definitions are stored once:
  {
    "format": 1,
    "pool": {
      "segments":   {"PID": [variant, ...]},   variant = [field, ...]
      "datatypes":  {"CX":  [variant, ...]},   variant = [component, ...] ([] = primitive)
      "tables":     {"1":   [variant, ...]},   variant = ["A", "F", ...]
      "structures": {"ADT_A01": [variant, ...]} variant = [element, ...]
    },
    "versions": {
      "2.5": {
        "segments": {"PID": 3, ...},      index into pool.segments["PID"]
        "datatypes": {...}, "tables": {...}, "structures": {...},
        "events": {"ADT^A04": "ADT_A01", ...}
      }
    }
  }
  field / component = [name, data type, usage, max repetitions (0 = unbounded),
                       max length (0 = not given), table number (0 = none)]
  usage = "R" required, "O" optional, "C" conditional, "B" backward compatible,
          "W" withdrawn
  element = ["PID", min, max] for a segment ("*": any segment), ["PATIENT", min, max,
            [element, ...]] for a group; max 0 = unbounded.
"""

import importlib
import json
import os
import re
import sys

DICT_VERSIONS = ["2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1"]
APY_ONLY_VERSIONS = ["2.8", "2.8.1", "2.8.2"]
ALL_VERSIONS = DICT_VERSIONS + APY_ONLY_VERSIONS
# hl7apy has no 2.7.1 package; its 2.7 structures are used for both 2.7 and 2.7.1.
APY_MODULE = {v: "hl7apy.v" + v.replace(".", "_") for v in ALL_VERSIONS}
APY_MODULE["2.7.1"] = "hl7apy.v2_7"

DICT_USAGE = {1: "O", 2: "R", 3: "C", 4: "B"}


def load_js_object(path):
    """hl7-dictionary's files are `var x = {JSON}; module.exports = x;`."""
    text = open(path, encoding="utf-8").read()
    return json.loads(text[text.index("{"): text.rindex("}") + 1])


def clean_name(text):
    return re.sub(r"\s+", " ", (text or "").strip())


def apy_name(text):
    """hl7apy names look like PATIENT_IDENTIFIER_LIST; make them readable."""
    words = [w for w in (text or "").split("_") if w]
    return " ".join(w.capitalize() if len(w) > 3 else w.lower() if w.lower() in ("of", "or", "and", "to", "by", "the", "for", "in", "on", "at") else w.capitalize() for w in words)


def table_number(value):
    if value in (None, "", 0):
        return 0
    if isinstance(value, int):
        return value
    m = re.match(r"^HL7(\d+)$", str(value))
    return int(m.group(1)) if m else 0


def dict_field(f):
    return [
        clean_name(f.get("desc")),
        f.get("datatype") or "ST",
        DICT_USAGE.get(f.get("opt"), "O"),
        int(f.get("rep", 1)),
        int(f.get("len") or 0),
        table_number(f.get("table")),
    ]


def apy_usage(min_, max_):
    if max_ == 0:
        return "W"
    return "R" if min_ >= 1 else "O"


def apy_reps(max_):
    return 0 if max_ < 0 else max(max_, 1)


WITHDRAWN_GAP = ["Withdrawn", "WD", "W", 1, 0, 0]


def apy_children(entries, reps):
    """Fields or components in hl7apy's form, placed by the number in their name
    ("PID_29"): hl7apy leaves some withdrawn fields out (v2.8 PID-28), and counting
    positions would shift every later field. Gaps become withdrawn placeholders."""
    out = []
    for entry in entries:
        if not (isinstance(entry, tuple) and len(entry) == 4 and entry[1] is not None):
            return None  # a malformed hl7apy entry (v2.1 ORO): keep no definition at all
        name, ref, (min_, max_), _kind = entry
        _ctype, _children, dt, long_name, table, _len = ref
        number = int(name.rsplit("_", 1)[1])
        while len(out) < number - 1:
            out.append(list(WITHDRAWN_GAP))
        if len(out) >= number:
            return None  # duplicate numbers: not a definition we can trust
        out.append([apy_name(long_name), dt, apy_usage(min_, max_), apy_reps(max_) if reps else 1, 0, table_number(table)])
    return out


def apy_segment(fields_tuple):
    return apy_children(fields_tuple, True)


def apy_datatype(components):
    return apy_children(components, False)


def apy_structure(struct_name, items, groups):
    prefix = struct_name + "_"
    out = []
    for entry in items:
        name, _ref, (min_, max_), kind = entry[0], entry[1], entry[2], entry[3]
        mx = 0 if max_ < 0 else max_
        if kind == "SEG":
            # hl7apy's placeholder for "any segment" (query parameters, master file
            # records) becomes "*", which the validator matches against any segment.
            out.append(["*" if name == "ANYHL7SEGMENT" else name, min_, mx])
        else:
            short = name[len(prefix):] if name.startswith(prefix) else name
            children = apy_structure(struct_name, groups[name][1], groups)
            # hl7apy has a few empty groups (QBP in some query structures): they match
            # nothing, so they are left out.
            if children:
                out.append([short, min_, mx, children])
    return out


def event_map(version, structures, table_354_desc, table_3, table_76):
    """Trigger event -> structure.

    Rule, in order: a structure named TYPE_EVENT; else the structure whose HL7 table 0354
    description lists the event (hl7-dictionary's 0354, the newest the package has), when
    that structure exists in this version. Types with a structure of their own name (ACK)
    are resolved at validation time for any event.
    """
    events = {}
    listed = {}
    for struct, desc in table_354_desc.items():
        for ev in re.split(r"[,\s]+", desc or ""):
            if re.fullmatch(r"[A-Z0-9]{3}", ev):
                listed.setdefault((struct.split("_")[0], ev), []).append(struct)
    types = set(s.split("_")[0] for s in structures) | set(table_76)
    for name in structures:
        if re.fullmatch(r"[A-Z0-9]{3}_[A-Z0-9]{3}", name):
            events[name.replace("_", "^")] = name
    for (typ, ev), structs in listed.items():
        key = typ + "^" + ev
        if key in events:
            continue
        for s in structs:
            if s in structures:
                events[key] = s
                break
    return dict(sorted(events.items()))


def borrow_names(entry, previous, pools):
    """hl7apy's names are upper-case identifiers ("MOTHER_S_MAIDEN_NAME"), its 2.8
    components carry few table numbers, some of its table numbers are wrong (ROL-2 and
    PRT-2 name table 0206; the standard says 0287), and it cannot say "conditional" (its
    OBX-4 is required). Where the v2.7.1 definition has the same data type at the same
    position, take its name, its table number when it has one, and its usage when that is
    C; everything else stays hl7apy's."""
    for kind in ("segments", "datatypes"):
        for name, idx in list(entry[kind].items()):
            if name not in previous[kind]:
                continue
            old = pools[kind].items[name][previous[kind][name]]
            new = [list(f) for f in pools[kind].items[name][idx]]
            changed = False
            for i, f in enumerate(new):
                if i < len(old) and old[i][1] == f[1]:
                    if f[0] != old[i][0]:
                        f[0] = old[i][0]
                        changed = True
                    if old[i][5] != 0 and f[5] != old[i][5]:
                        f[5] = old[i][5]
                        changed = True
                    if old[i][2] == "C" and f[2] in ("R", "O"):
                        f[2] = "C"
                        changed = True
            if changed:
                entry[kind][name] = pools[kind].add(name, new)


class Pool:
    def __init__(self):
        self.items = {}

    def add(self, name, value):
        variants = self.items.setdefault(name, [])
        for i, v in enumerate(variants):
            if v == value:
                return i
        variants.append(value)
        return len(variants) - 1

    def dump(self):
        return dict(sorted(self.items.items()))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    dict_dir, out_path = sys.argv[1], sys.argv[2]
    dict_pkg = json.load(open(os.path.join(dict_dir, "package.json")))
    assert dict_pkg["version"] == "1.0.1", dict_pkg["version"]
    import hl7apy

    apy_version = getattr(hl7apy, "__version__", None)
    dict_tables = load_js_object(os.path.join(dict_dir, "lib", "tables.js"))
    t354 = dict_tables.get("354", {}).get("values", {})

    pools = {k: Pool() for k in ("segments", "datatypes", "tables", "structures")}
    previous = None  # the last hl7-dictionary version's entry, to name hl7apy-only fields
    versions = {}
    stats = {}
    for v in ALL_VERSIONS:
        apy = importlib.import_module(APY_MODULE[v])
        try:
            apy_tables = importlib.import_module(APY_MODULE[v] + ".tables").TABLES
        except ImportError:
            apy_tables = None
        entry = {"segments": {}, "datatypes": {}, "tables": {}, "structures": {}}
        # Segments and data types.
        if v in DICT_VERSIONS:
            base = os.path.join(dict_dir, "lib", v)
            segs = load_js_object(os.path.join(base, "segments.js"))
            dts = load_js_object(os.path.join(base, "fields.js"))
            for sid, sdef in segs.items():
                entry["segments"][sid] = pools["segments"].add(sid, [dict_field(f) for f in sdef["fields"]])
            for did, ddef in dts.items():
                entry["datatypes"][did] = pools["datatypes"].add(did, [dict_field(f) for f in ddef.get("subfields", [])])
        # Fill from hl7apy what hl7-dictionary lacks (all of 2.8.x; a few segments elsewhere).
        for sid, sdef in apy.SEGMENTS.items():
            if sid not in entry["segments"]:
                fields = apy_segment(sdef[1])
                if fields is not None:
                    entry["segments"][sid] = pools["segments"].add(sid, fields)
        for did, comps in apy.DATATYPES_STRUCTS.items():
            if did not in entry["datatypes"]:
                comps = apy_datatype(comps)
                if comps is not None:
                    entry["datatypes"][did] = pools["datatypes"].add(did, comps)
        for prim in ("ST", "ID", "IS", "NM", "SI", "DT", "DTM", "TM", "TX", "FT", "GTS", "WD"):
            if prim not in entry["datatypes"] and v in APY_ONLY_VERSIONS:
                entry["datatypes"][prim] = pools["datatypes"].add(prim, [])
        # Tables: hl7apy's per-version codes where it has them, else hl7-dictionary's.
        if apy_tables:
            for tid, (_desc, values) in apy_tables.items():
                n = table_number(tid)
                if n and values:
                    entry["tables"][str(n)] = pools["tables"].add(str(n), sorted(set(values)))
        else:
            for tid, tdef in dict_tables.items():
                values = sorted(set(tdef.get("values", {}).keys()))
                if values:
                    entry["tables"][str(int(tid))] = pools["tables"].add(str(int(tid)), values)
        # Message structures (hl7apy: names are the standard's structure ids).
        for name, (_kind, items) in apy.MESSAGES.items():
            entry["structures"][name] = pools["structures"].add(name, apy_structure(name, items, apy.GROUPS))
        t3 = entry["tables"].get("3")
        t76 = entry["tables"].get("76")
        entry["events"] = event_map(
            v,
            set(entry["structures"]),
            t354,
            pools["tables"].items["3"][t3] if t3 is not None else [],
            pools["tables"].items["76"][t76] if t76 is not None else [],
        )
        if v in APY_ONLY_VERSIONS and previous is not None:
            borrow_names(entry, previous, pools)
        if v in DICT_VERSIONS:
            previous = entry
        for k in ("segments", "datatypes", "tables", "structures"):
            entry[k] = dict(sorted(entry[k].items()))
        versions[v] = entry
        stats[v] = {k: len(entry[k]) for k in ("segments", "datatypes", "tables", "structures", "events")}

    out = {
        "format": 1,
        "sources": {
            "hl7-dictionary": dict_pkg["version"],
            "hl7apy": apy_version or "1.3.5",
        },
        "pool": {k: p.dump() for k, p in pools.items()},
        "versions": versions,
    }
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(out, fh, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
        fh.write("\n")
    size = os.path.getsize(out_path)
    for v, s in stats.items():
        print(v, s)
    print("pool variants:", {k: sum(len(x) for x in p.items.values()) for k, p in pools.items()})
    print("bytes:", size)


if __name__ == "__main__":
    main()
