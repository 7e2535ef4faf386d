"""Paracel for Python: a parameter-server framework for distributed machine
learning on MPI.

Users subclass :class:`Algorithm`, declare its parameters with
:class:`Param`, and register server-side update functions with
:func:`update_function` (and, for row tables, :func:`row_function` and
:func:`table_function`). Importing this package does not start MPI.
"""

from paracel.mpiexec import limit_blas_threads

limit_blas_threads()  # in a rank, before numpy starts its BLAS threads

from paracel.algorithm import Algorithm  # noqa: E402
from paracel.config import Param  # noqa: E402
from paracel.errors import ConfigError, DataError, ParacelError, RemoteError, UserError  # noqa: E402
from paracel.jobs import run_job  # noqa: E402
from paracel.model import load_model  # noqa: E402
from paracel.server.rowfns import row_function, table_function  # noqa: E402
from paracel.server.updates import update_function  # noqa: E402

__all__ = ["Algorithm", "Param", "load_model", "run_job", "update_function", "row_function",
           "table_function", "ParacelError", "UserError", "ConfigError", "DataError", "RemoteError"]
__version__ = "0.1.0"
