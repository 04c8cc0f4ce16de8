#!/usr/bin/env python3
"""PESQ (ITU-T P.862, narrowband, 8 kHz) of the loss-concealment bench's WAVs.

Usage: pesq_table.py [DIR]   (default target/plc; written by `plc-bench DIR`)
Needs: pip install pesq numpy scipy
Prints one row per codec and loss condition: MOS-LQO of our concealment, of
zero-filling and of plain repetition, each against the clean decode.
"""
import csv
import sys
from collections import defaultdict

import numpy as np
from pesq import pesq
from scipy.io import wavfile


def read(path):
    rate, x = wavfile.read(path)
    assert rate == 8000, f"{path}: {rate} Hz"
    return x.astype(np.float64)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "target/plc"
    rows = defaultdict(dict)
    lost = {}
    with open(f"{d}/manifest.csv") as f:
        for r in csv.DictReader(f):
            key = (r["codec"], r["condition"])
            ref, deg = read(r["reference"]), read(r["degraded"])
            rows[key][r["fill"]] = pesq(8000, ref, deg, "nb")
            lost[key] = r["lost_pct"]
    print(f"| codec | condition | lost % | ours | zero-fill | repetition |")
    print(f"|---|---|---:|---:|---:|---:|")
    for (codec, cond), v in rows.items():
        print(f"| {codec} | {cond} | {lost[(codec, cond)]} | {v['ours']:.2f} | "
              f"{v['zero']:.2f} | {v['repeat']:.2f} |")


if __name__ == "__main__":
    main()
