"""Energy and carbon accounting (DESIGN section 6; method in docs/energy.md).

meters / nvml / rapl   what a job used, measured or estimated, by which meter
attribution            who pays for which joule (frames, shared devices)
sites                  PUE, WUE, market factor, embodied figures per site
signals                grid carbon intensity now and ahead, pluggable providers
accounting             facility energy, water, gCO2e LB/MB, embodied, SCI
ledger / report        per-project sums in SQLite; terminal and HTML reports

Nothing here imports torch, bpy, grpc or pynvml at module import time.
"""
