"""Calibration of the abTEM engine's response against a real abTEM multislice ADF line scan.

PROVISIONAL: to be written by ``benchmarks/calibrate_abtem.py --write``.
"""

CALIBRATION = {
    "scale": {"lobato": {"1.0": 0.01, "2.0": 0.01}, "kirkland": {"1.0": 0.01, "2.0": 0.01}},
}
