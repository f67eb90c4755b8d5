#!/usr/bin/env python3
"""Golden values for ssm-monitor's WFDB reader (tests/monitor/test_monitor.cpp): physical samples read by the
PhysioNet `wfdb` Python package at fixed frame indices of the records in ../shared/data/wfdb-records.
Run: python3 tests/monitor/make_wfdb_golden.py  (writes tests/monitor/wfdb_golden.json). Tolerance in the test: 1e-6."""
import json, os, sys
import numpy as np
import wfdb

here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(here, "..", "..", "..", "shared", "data", "wfdb-records")
if len(sys.argv) > 1:
    data = sys.argv[1]
out = {"wfdb_version": wfdb.__version__, "records": {}}
for name in ["100", "test01_00s", "v102s"]:
    r = wfdb.rdrecord(os.path.join(data, name))
    n = r.p_signal.shape[0]
    idx = sorted(set([0, 1, 2, 3, 1000, 1001, n // 2, n // 2 + 1, n - 2, n - 1]))
    out["records"][name] = {
        "fs": r.fs, "frames": n, "names": r.sig_name, "units": r.units,
        "index": idx, "values": [[float(v) for v in r.p_signal[i]] for i in idx],
        "sum": [float(s) for s in np.nansum(r.p_signal, axis=0)],
    }
json.dump(out, open(os.path.join(here, "wfdb_golden.json"), "w"), indent=1)
print("wrote wfdb_golden.json with", list(out["records"]))
