"""Applying a saved model to new data: the ``predict`` job.

``python -m paracel.run predict MODEL INPUT`` (or a job file naming
``paracel.predict:Predict``) reads the model a job saved, finds from its
stamp the algorithm that made it, and lets that algorithm apply it to the
input: every worker loads its share of the input with the usual loaders
(so headers, columns, compressed files and ``bad_lines`` work as in
training), scores it with the model and writes ``pred_<worker>`` files.
When the input carries the truth (labels, ratings) the job reports how well
the model does on it. An algorithm takes part by defining the class method
``apply_model(worker, model)``.
"""

import os

import paracel
from paracel.config import REQUIRED
from paracel.errors import ConfigError, DataError


class Predict(paracel.Algorithm):
    """Apply a saved model (``params.model``) to the job's input."""

    summary = "apply a model saved by a job to new data (pred_<worker> files, scores)"
    reads = "what the algorithm that made the model reads (see its --describe)"
    parameters = {
        "model": paracel.Param(str, REQUIRED, "the model file (model.h5) a job saved",
                               path=True),
    }

    def check_job(self, job):
        """Refuse, before launch, a model that is missing, does not say what
        made it, or whose algorithm cannot apply it; and a job without input."""
        applier(self.model)
        if job.input is None:
            raise ConfigError("input: the data to apply the model to is missing")

    def solve(self):
        model = paracel.load_model(self.model)
        return applier(self.model, model).apply_model(self, model)


def applier(path, model=None):
    """The algorithm class that applies the model at ``path`` (ConfigError
    naming ``params.model`` otherwise)."""
    from paracel.run import resolve

    if not os.path.isfile(path):
        raise ConfigError(f"params.model: {path}: no such file")
    try:
        model = model or paracel.load_model(path)
    except DataError as error:
        raise ConfigError(f"params.model: {error}") from None
    if model.algorithm is None:
        raise ConfigError(f"params.model: {path} does not say which algorithm made it "
                          "(saved by an older version?)")
    cls = resolve(model.algorithm)
    if not hasattr(cls, "apply_model"):
        raise ConfigError(f"params.model: {path} is a {model.algorithm} model, and "
                          f"{model.algorithm} cannot apply its models to new data")
    return cls
