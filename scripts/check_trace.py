#!/usr/bin/env python3
"""check_trace.py — validate a Chrome / Perfetto trace written by nabla's profiler.

    scripts/check_trace.py trace.json [--require-flows] [--require-memory]

Checks, per the Trace Event Format:
  * the file is valid JSON with a "traceEvents" list, every event has "ph" and "pid";
  * "X" slices have name, tid, ts >= 0 and dur >= 0, and on each lane (pid, tid)
    they nest like brackets: a slice that starts inside another ends inside it;
  * "B"/"E" events (if any) are matched per lane, with the same name;
  * flow events: every id has exactly one "s" and one "f", the "f" is not
    earlier than its "s", and each binds to a slice on its lane (one that
    encloses its timestamp);
  * "C" counters have numeric args.
Prints a one-screen summary and exits 1 on the first kind of error found
(all errors of that run are listed).
"""
import argparse
import collections
import json
import sys

EPS = 1e-6   # the profiler writes microseconds with 3 decimals (ns)


def check(path, require_flows=False, require_memory=False):
    errors = []
    with open(path, "rb") as f:
        try:
            doc = json.load(f)
        except json.JSONDecodeError as e:
            return [f"not valid JSON: {e}"], {}
    events = doc.get("traceEvents") if isinstance(doc, dict) else doc
    if not isinstance(events, list):
        return ["no traceEvents list"], {}

    lanes = collections.defaultdict(list)     # (pid, tid) -> [(ts, end, name)]
    be = collections.defaultdict(list)        # (pid, tid) -> stack of B names
    flows = collections.defaultdict(dict)     # id -> {"s": ev, "f": ev}
    counters = 0
    cats = collections.Counter()
    names = {}
    for i, e in enumerate(events):
        if not isinstance(e, dict) or "ph" not in e or "pid" not in e:
            errors.append(f"event {i}: not an object with ph and pid")
            continue
        ph = e["ph"]
        lane = (e["pid"], e.get("tid"))
        if ph == "X":
            if not all(k in e for k in ("name", "ts", "dur", "tid")):
                errors.append(f"event {i}: X without name/ts/dur/tid")
                continue
            if e["ts"] < 0 or e["dur"] < 0:
                errors.append(f"event {i} ({e['name']}): negative ts or dur")
            lanes[lane].append((e["ts"], e["ts"] + e["dur"], e["name"]))
            cats[e.get("cat", "")] += 1
        elif ph == "B":
            be[lane].append(e.get("name"))
        elif ph == "E":
            if not be[lane]:
                errors.append(f"event {i}: E without B on lane {lane}")
            else:
                b = be[lane].pop()
                if e.get("name") not in (None, b):
                    errors.append(f"event {i}: E '{e.get('name')}' closes B '{b}'")
        elif ph in ("s", "f"):
            fid = e.get("id")
            if fid is None:
                errors.append(f"event {i}: flow without id")
            elif ph in flows[fid]:
                errors.append(f"flow id {fid}: two '{ph}' events")
            else:
                flows[fid][ph] = e
        elif ph == "C":
            args = e.get("args", {})
            if not args or not all(isinstance(v, (int, float)) for v in args.values()):
                errors.append(f"event {i}: counter without numeric args")
            counters += 1
        elif ph == "M":
            if e.get("name") == "thread_name":
                names[lane] = e.get("args", {}).get("name")
    for lane, stack in be.items():
        if stack:
            errors.append(f"lane {lane}: {len(stack)} B event(s) never ended ({stack[-1]})")

    max_depth = 0
    for lane, sl in lanes.items():
        sl.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for ts, end, name in sl:
            while stack and stack[-1][1] <= ts + EPS:
                stack.pop()
            if stack and end > stack[-1][1] + EPS:
                errors.append(f"lane {lane}: '{name}' [{ts}, {end}] crosses the end of "
                              f"'{stack[-1][2]}' at {stack[-1][1]}")
            stack.append((ts, end, name))
            max_depth = max(max_depth, len(stack))

    def encloses(e):
        lane = (e["pid"], e.get("tid"))
        return any(ts - EPS <= e["ts"] <= end + EPS for ts, end, _ in lanes.get(lane, ()))

    for fid, p in flows.items():
        if set(p) != {"s", "f"}:
            errors.append(f"flow id {fid}: only {''.join(p)}")
            continue
        if p["f"]["ts"] + EPS < p["s"]["ts"]:
            errors.append(f"flow id {fid}: finishes before it starts")
        for ph in ("s", "f"):
            if not encloses(p[ph]):
                errors.append(f"flow id {fid}: '{ph}' at {p[ph]['ts']} binds to no slice")
    if require_flows and not flows:
        errors.append("no flow events (forward -> backward arrows)")
    if require_memory and not counters:
        errors.append("no memory counter events")
    stats = {"slices": sum(len(v) for v in lanes.values()), "lanes": len(lanes), "flows": len(flows),
             "counters": counters, "max_depth": max_depth, "categories": dict(cats),
             "lane_names": {str(k[1]): v for k, v in names.items()}}
    return errors, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--require-flows", action="store_true")
    ap.add_argument("--require-memory", action="store_true")
    a = ap.parse_args()
    errors, stats = check(a.trace, a.require_flows, a.require_memory)
    for k, v in stats.items():
        print(f"{k}: {v}")
    if errors:
        for e in errors[:50]:
            print("error:", e, file=sys.stderr)
        if len(errors) > 50:
            print(f"... {len(errors) - 50} more errors", file=sys.stderr)
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
