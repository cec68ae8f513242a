"""The one home of what the tests share, and of what the benchmarks and notebooks
borrow from them; never part of the package (`setup.cfg` installs `keras_inception*`).

The tests import it as `support` (pytest puts `tests/` on `sys.path`); the benchmarks and
the notebooks put the clone's `tests/` on `sys.path` and import `support.faces`,
`support.random_backbone` or `support.segmentation`. Its third-party dependencies are
test-only (`requirements-test.txt`), e.g. `faceie` (GPL-3.0), which nothing under
`keras_inception/` may import.

* pytest plumbing: `tiers` (markers kept true), `schedule` (the two workers' order,
  from `durations.json`), `disk`, `crash`, `runners` (the command line in a child);
* fixtures' helpers: `helpers`, `registry_files` (files of packages on the package
  index), `face_crops` / `faces` (MTCNN face crops), `facenet_reference`, `networks`,
  `toy_net`, `random_backbone`, `segmentation`;
* scripts the tests start: `backend_worker.py`, `distribute_worker.py`.

The rules (tests/test_architecture.py): `keras_inception/` imports nothing of `tests/`;
`support` imports no test module; the benchmarks import only `support`'s shared modules.
"""
