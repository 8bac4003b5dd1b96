"""The test suite, a package so that the tests, the benchmark and the demo share `tests.harness` by import.

Run everything from the repository's root (pytest's rootdir and `pythonpath`; `python -m bench.bench`,
`python -m examples.demo`): that is what puts `tests` on the import path, nothing edits sys.path.
"""
