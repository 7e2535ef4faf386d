"""Generate ``model.h5``: the factors ``conf/recommend.json`` recommends from.

It is what ``conf/mf.json`` learns from ``data/ratings/ratings.txt`` (300
users × 200 items, k = 8): this script runs that job (the bundled ``mf``,
staleness 0, so the factors are the same bits every run) in a temporary
folder and copies its ``model.h5`` here, id maps included. The file is
shipped so that ``./run_mpi.sh conf/recommend.json`` works in a fresh clone;
to recommend from factors of your own, point the job's ``params.model`` at
the ``model.h5`` an ``mf`` or ``als`` job wrote (for ``conf/mf.json``:
``../output/mf/model.h5``).

Run ``.venv/bin/python data/recommend/make.py`` to rewrite it (the factors
are the same every time; the file's ``created`` stamp is not).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "..", "..", "conf", "mf.json")


def main():
    with open(CONF, encoding="utf-8") as handle:
        job = json.load(handle)
    with tempfile.TemporaryDirectory(prefix="recommend_model_") as folder:
        job["input"] = os.path.normpath(os.path.join(os.path.dirname(CONF), job["input"]))
        job["output"] = os.path.join(folder, "out")
        job["params"]["factor_files"] = False
        path = os.path.join(folder, "job.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(job, handle)
        subprocess.run([sys.executable, "-m", "paracel.run", path], check=True)
        shutil.copyfile(os.path.join(folder, "out", "model.h5"), os.path.join(HERE, "model.h5"))


if __name__ == "__main__":
    main()
