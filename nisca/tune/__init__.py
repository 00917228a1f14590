"""Ray Tune glue: trainables, study specs, search spaces, the study runner and W&B hookup.

Importing the package sets the quiet-output environment (STACK.md) before Ray is imported.
"""

from nisca.tune.environment import quiet_environment

quiet_environment()
