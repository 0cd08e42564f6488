"""Benchmarks as a library: resumable grids of runs, seed statistics, result schemas, tables and plots.

Each benchmark is a module here with a `main(argv)`; run it with `steerlab bench <name> [--quick] [...]`
(`steerlab bench --list` names them). Results (JSON + plots) are written to the repository's
`benchmarks/results/` (or $STEERLAB_BENCH_DIR/results), per-run records to `benchmarks/runs/`, which is not
tracked: `steerlab bench records pack|unpack` keeps them as one compressed archive per benchmark in
`benchmarks/records/` (see docs/benchmarks.md).
"""
