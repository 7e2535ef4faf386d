"""The ``wc`` algorithm against ``collections.Counter`` on real text.

Real data: the dataset descriptions that scikit-learn installs
(``sklearn/datasets/descr/*.rst``, 14 files, about 47 kB of English prose and
tables), copied into a folder that is the job's input.

Reference: ``Counter`` over ``re.findall(r"[^\\W_]+(?:'[^\\W_]+)*", text.lower())`` of every
file (the tokenisation rule of ``algorithms/wc.py``). Tolerance: none, counts
and top-k must be equal exactly, and the top-k is cut inside a run of tied
counts so that the documented tie-break (most frequent first, ties by word)
decides which words make it.
"""

import json
import os
import re
import shutil
import sys
from collections import Counter

import pytest
import sklearn

from conftest import assert_ok, run_command

pytestmark = pytest.mark.mpi

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def descr_files():
    """The ``.rst`` files of scikit-learn's ``datasets/descr`` folder."""
    folder = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "descr")
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                   if name.endswith(".rst"))
    assert len(files) >= 10
    return files


def reference(files, lower=True):
    """Word counts of ``files`` by ``collections.Counter``."""
    counts = Counter()
    for path in files:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        counts.update(WORD.findall(text.lower() if lower else text))
    return counts


def ranked(counts):
    """``(word, count)`` pairs, most frequent first, ties by word."""
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))


def tied_cut(counts, at_least=20):
    """The smallest k >= ``at_least`` whose k-th and (k+1)-th words tie, so a
    top-k cut there depends on the tie-break."""
    values = [count for _, count in ranked(counts)]
    return next(k for k in range(at_least, len(values)) if values[k - 1] == values[k])


def read_pairs(text):
    """``(word, count)`` pairs of ``word\\tcount`` lines."""
    return [(word, int(count)) for word, count in
            (line.split("\t") for line in text.splitlines())]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder holding copies of the descr files."""
    folder = tmp_path_factory.mktemp("descr")
    for path in descr_files():
        shutil.copy(path, folder)
    return str(folder)


def check_job(result, counts, workers, topk):
    """The job's files and metrics against the reference ``counts``."""
    assert_ok(result)
    words = []
    for worker in range(workers):
        pairs = read_pairs(result.read(f"wc_{worker}"))
        assert pairs, f"worker {worker} wrote no words"
        words.extend(pairs)
    assert len(words) == len({word for word, _ in words})  # every word exactly once
    assert dict(words) == counts
    assert read_pairs(result.read("topk.txt")) == ranked(counts)[:topk]
    metrics = result.metrics
    assert metrics["workers"] == workers
    assert metrics["metrics"] == {"distinct_words": len(counts),
                                  "words": sum(counts.values()),
                                  "top_word": ranked(counts)[0][0]}
    assert all(server["requests"] > 0 and server["keys"] > 0
               for server in metrics["server_stats"])
    assert len(metrics["server_stats"]) == metrics["servers"]


@pytest.mark.parametrize("processes,servers", [(2, 1), (4, 2), (5, 1)])
def test_counts_and_topk_equal_counter(run_job, corpus, processes, servers):
    counts = reference(descr_files())
    topk = tied_cut(counts)
    result = run_job("wc", processes=processes, servers=servers, input=corpus,
                     params={"topk": topk})
    check_job(result, counts, processes - servers, topk)


def test_case_kept_when_lower_is_false(run_job, tmp_path):
    """Three files given as a list; with ``lower`` false the counts keep case
    (and differ from the lower-cased ones)."""
    files = descr_files()[:3]
    for path in files:
        shutil.copy(path, tmp_path)
    counts = reference(files, lower=False)
    assert counts != reference(files)
    result = run_job("wc", processes=5, servers=2, input=[str(tmp_path / os.path.basename(p))
                                                         for p in files],
                     params={"topk": 15, "lower": False})
    check_job(result, counts, 3, 15)


def test_bad_topk_exits_2(tmp_path, corpus):
    """Checked by ``python -m paracel.run`` before it launches mpiexec."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"algorithm": "wc", "input": corpus,
                               "output": str(tmp_path / "out"), "params": {"topk": 0}}))
    code, _, stderr, _ = run_command([sys.executable, "-m", "paracel.run", str(job)],
                                     timeout=60)
    assert code == 2
    assert "params.topk" in stderr
