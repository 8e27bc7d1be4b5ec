"""Metrics against hand computations on hand-written matrices."""
import pytest

from nlbench.training import metrics as M
R = [[90.0, 10.0, 5.0],
     [60.0, 80.0, 20.0],
     [40.0, 70.0, 85.0]]
B = [8.0, 12.0, 30.0]


def test_average_accuracy_is_mean_of_last_row():
    assert M.avg_acc(R) == pytest.approx((40 + 70 + 85) / 3)
    assert M.avg_acc(R, 1) == pytest.approx((60 + 80) / 2)


def test_learning_accuracy_is_mean_of_diagonal():
    assert M.learning_acc(R) == pytest.approx((90 + 80 + 85) / 3)


def test_bwt_and_fwt_by_hand():
    assert M.bwt(R) == pytest.approx(((40 - 90) + (70 - 80)) / 2)
    assert M.fwt(R, B) == pytest.approx(((10 - 12) + (20 - 30)) / 2)


def test_forgetting_takes_max_over_rows_before_the_last():
    # task 0: max(90, 60) - 40 = 50; task 1: max(10, 80) - 70 = 10
    assert M.forgetting(R) == pytest.approx((50 + 10) / 2)
    # The last row is excluded from the max (Chaudhry): a late rise does not count as a peak.
    rising = [[50.0, 0.0], [70.0, 60.0]]
    assert M.forgetting(rising) == pytest.approx(50 - 70)


def test_identity_average_equals_learning_plus_scaled_bwt():
    T = len(R)
    assert M.avg_acc(R) == pytest.approx(M.learning_acc(R) + (T - 1) / T * M.bwt(R))


def test_average_incremental_accuracy():
    expected = (90 + (60 + 80) / 2 + (40 + 70 + 85) / 3) / 3
    assert M.avg_incremental_acc(R) == pytest.approx(expected)


def test_joint_matrix_with_only_a_last_row():
    joint = [None, None, [70.0, 80.0, 90.0]]
    s = M.summarize(joint, B)
    assert s["avg_acc"] == pytest.approx(80.0)
    assert s["forgetting"] is None and s["bwt"] is None and s["fwt"] is None and s["learning_acc"] is None


def test_single_task_has_no_transfer_or_forgetting():
    s = M.summarize([[75.0]], [10.0])
    assert s["avg_acc"] == 75.0 and s["forgetting"] is None and s["bwt"] is None and s["fwt"] is None
