"""The one time limit of the test suite.

A limit in a test exists only to stop a hang, never to judge how fast the machine is: a loaded 2-core CI machine can
run the demo pipeline several times slower than an idle one (seen: the Slurm demo past 10 minutes), and a test that
fails for that reason says nothing about the code. Every wait, subprocess timeout and polling deadline in the tests
uses `HANG_GUARD_S`; `tests/test_timing.py` refuses any other literal limit.
"""

HANG_GUARD_S = 3600
