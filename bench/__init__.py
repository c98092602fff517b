"""spoold's benchmark: spoold beside the file-system floor, huey and dirq, in one run.

Run it with `python -m bench` (see bench/README.md). Every system is measured on
fresh temporary folders with the same no-op jobs, so the ratios in one run mean
something even where absolute numbers on a shared machine are noisy.
"""
