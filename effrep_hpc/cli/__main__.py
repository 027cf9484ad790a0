"""`python -m effrep_hpc.cli ...` (what `mpiexec ... python -m mpi4py -m effrep_hpc.cli` runs)."""

import sys

from effrep_hpc.cli import main

sys.exit(main())
