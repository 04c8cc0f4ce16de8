#!/usr/bin/env python3
"""PESQ (ITU-T P.862, narrowband, 8 kHz) of the loss-concealment bench's WAVs.

Usage: pesq_table.py [DIR...]   (default target/plc; each written by
`plc-bench DIR SEED`; with several, each figure is the mean over them)
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
    dirs = sys.argv[1:] or ["target/plc"]
    rows = defaultdict(lambda: defaultdict(list))
    lost = defaultdict(list)
    for d in dirs:
        with open(f"{d}/manifest.csv") as f:
            for r in csv.DictReader(f):
                key = (r["codec"], r["condition"])
                ref, deg = read(r["reference"]), read(r["degraded"])
                rows[key][r["fill"]].append(pesq(8000, ref, deg, "nb"))
                if r["fill"] == "ours":
                    lost[key].append(float(r["lost_pct"]))
    print(f"PESQ MOS-LQO (P.862 narrowband), mean of {len(dirs)} loss pattern(s)")
    print("| codec | condition | lost % | ours | zero-fill | repetition |")
    print("|---|---|---:|---:|---:|---:|")
    mean = lambda xs: sum(xs) / len(xs)
    for (codec, cond), v in rows.items():
        print(f"| {codec} | {cond} | {mean(lost[(codec, cond)]):.1f} | "
              f"{mean(v['ours']):.2f} | {mean(v['zero']):.2f} | {mean(v['repeat']):.2f} |")


if __name__ == "__main__":
    main()
