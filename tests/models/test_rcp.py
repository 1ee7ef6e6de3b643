"""Default LARS hyperparameters from MLPerf's reference convergence points (the RCP table of mlperf-logging)."""

import pytest

from menagerie.models.rcp import IMAGENET_TRAIN_IMAGES, reference_hyperparameters, reference_points


@pytest.mark.parametrize("batch,lr", [(1632, 7.4), (3264, 10.5), (4096, 10.0), (8192, 17.0)])
def test_table_batch_sizes_get_the_table_values(batch, lr):
    reference = reference_hyperparameters(batch)
    assert reference.base_lr == lr and reference.between == (batch, batch)


def test_1632_and_3264_schedules_match_the_table():
    assert reference_hyperparameters(1632).warmup_epochs == 2 and reference_hyperparameters(1632).epochs == 35
    assert reference_hyperparameters(3264).warmup_epochs == 2 and reference_hyperparameters(3264).epochs == 37
    schedule = 14523 * 3264 / IMAGENET_TRAIN_IMAGES  # the table's decay steps at 3264: 37.0 epochs
    assert reference_hyperparameters(3264).schedule_epochs == pytest.approx(schedule, abs=0.01)


def test_between_rows_is_linear():
    reference = reference_hyperparameters(2448)  # halfway from 1632 to 3264
    assert reference.base_lr == pytest.approx((7.4 + 10.5) / 2) and reference.between == (1632, 3264)
    assert reference.schedule_epochs == pytest.approx(36.0, abs=0.01) and reference.epochs == 36


def test_outside_the_table_is_clamped():
    small, large = reference_hyperparameters(64), reference_hyperparameters(1_000_000)
    assert small.base_lr == 7.4 and small.between == (1632, 1632)
    largest = reference_points()[-1]
    assert large.base_lr == largest.base_lr and large.between == (largest.batch_size, largest.batch_size)


def test_table_is_sorted_lars_rows():
    sizes = [point.batch_size for point in reference_points()]
    assert sizes == sorted(sizes) and sizes[:2] == [1632, 3264]


def test_bad_batch_size_is_named():
    with pytest.raises(ValueError, match="global_batch_size must be positive"):
        reference_hyperparameters(0)
