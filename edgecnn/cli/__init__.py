"""The ``edgecnn`` command line: one module per command group, each command parses options and makes one
library call. The entry point is ``edgecnn.cli:app``; importing the groups registers their commands, in the
order ``--help`` lists them.
"""

# isort: skip_file
from edgecnn.cli.app import app
from edgecnn.cli import training  # noqa: F401  train, evaluate
from edgecnn.cli import export  # noqa: F401  export
from edgecnn.cli import adopt  # noqa: F401  adopt
from edgecnn.cli import inference  # noqa: F401  info, classify, webcam
from edgecnn.cli import serve  # noqa: F401  serve
from edgecnn.cli import bundle  # noqa: F401  bundle
from edgecnn.cli import tools  # noqa: F401  demo, benchmark, doctor

__all__ = ["app"]
