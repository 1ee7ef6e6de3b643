"""The MLPerf-style training loop: real digits to >= 0.9 top-1 with a compliant MLLOG; recipe pieces; errors."""

import json

import pytest
import torch

from harness.cli import main
from models import mlperf
from models.data.folders import write_digits
from models.resnet import build
from models.train_resnet import LARS, TrainConfig, learning_rate, make_optimizer, parameter_groups


def test_digits_reach_090_and_the_mllog_is_compliant(tmp_path):
    """scikit-learn's 8x8 digits (real handwriting), upsampled to 16x16, through the CLI."""
    write_digits(tmp_path / "digits", size=16)
    out = tmp_path / "out"
    code = main(["train", "resnet", "--data", str(tmp_path / "digits"), "--arch", "resnet8", "--loader", "torchvision",
                 "--optimizer", "sgd", "--lr", "0.4", "--warmup-epochs", "0.5", "--epochs", "5", "--eval-every", "1",
                 "--batch-size", "64", "--target", "0.9", "--image-size", "16", "--no-augment", "--workers", "1",
                 "--out", str(out)])
    assert code == 0
    record = json.loads(next(out.glob("*.json")).read_text())
    assert record["benchmark"] == "resnet.time_to_accuracy" and record["provenance"]["torch"] == torch.__version__
    result = record["result"]
    assert result["reached_target"] and result["evaluations"][-1]["top1"] >= 0.9
    log = out / "resnet-resnet8-torchvision-optimized.mllog"
    passed, report = mlperf.check_compliance(log, tmp_path / "compliance.log")
    assert passed, report
    assert "training_3.1.0/closed_resnet_sgd.yaml" in report  # the closed division's SGD rules were applied
    score = mlperf.score(log)
    assert score.status == "success" and score.minutes > 0 and score.best_accuracy >= 0.9
    assert main(["mlperf", str(log), "--out", str(tmp_path / "checks")]) == 0


def test_learning_rate_warms_up_then_decays_to_the_end_value():
    rates = [learning_rate(step, 2.0, 10, 110) for step in range(111)]
    assert rates[0] == pytest.approx(0.2) and rates[9] == pytest.approx(2.0)
    assert rates[10] == pytest.approx(2.0) and rates[110] == pytest.approx(1e-4)
    assert rates[60] == pytest.approx((2.0 - 1e-4) * 0.25 + 1e-4)  # halfway through the decay, power 2
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))


def test_no_weight_decay_on_batchnorm_and_biases():
    model = build("resnet8", 10)
    decay, plain = parameter_groups(model, 5e-5)
    assert decay["weight_decay"] == 5e-5 and plain["weight_decay"] == 0.0 and not plain["lars"]
    assert all(p.ndim == 4 or p is model.fc.weight for p in decay["params"])
    assert any(p is model.fc.bias for p in plain["params"])
    assert len(decay["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_lars_step_follows_the_trust_ratio():
    weight = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # |w| = 5
    bias = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = LARS([dict(params=[weight], weight_decay=0.1, lars=True),
                      dict(params=[bias], weight_decay=0.0, lars=False)], lr=2.0, momentum=0.9)
    weight.grad, bias.grad = torch.tensor([0.0, 2.0]), torch.tensor([0.5])  # |g| = 2
    optimizer.step()
    ratio = 0.001 * 5 / (2 + 0.1 * 5)
    expected = torch.tensor([3.0, 4.0]) - 2.0 * ratio * (torch.tensor([0.0, 2.0]) + 0.1 * torch.tensor([3.0, 4.0]))
    assert torch.allclose(weight.detach(), expected)
    assert torch.allclose(bias.detach(), torch.tensor([1.0 - 2.0 * 0.5]))


def test_sgd_optimizer_has_the_same_groups():
    model = build("resnet8", 10)
    optimizer = make_optimizer(TrainConfig(data=".", optimizer="sgd"), model, 0.1)
    assert isinstance(optimizer, torch.optim.SGD)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [5e-5, 0.0]


@pytest.mark.parametrize("change,message", [
    ({"arch": "resnet51"}, "unknown arch 'resnet51'"),
    ({"loader": "pillow"}, "unknown loader 'pillow'"),
    ({"optimizer": "adam"}, "unknown optimizer"),
    ({"batch_size": 6, "accumulation": 4}, "not a multiple"),
    ({"target": 1.5}, "target"),
    ({"warmup_epochs": 50}, "warmup_epochs"),
    ({"mode": "reference", "compile": True}, "eager"),
])
def test_bad_settings_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(data=".", **change).check()


def test_default_learning_rates_follow_the_global_batch():
    assert TrainConfig(data=".", optimizer="sgd").base_lr(1024) == pytest.approx(0.4)
    assert TrainConfig(data=".", optimizer="lars").base_lr(3264) == pytest.approx(10.5)
    assert TrainConfig(data=".", lr=0.7).base_lr(99) == 0.7


def error_text(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich wraps long lines to the terminal


def test_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    assert main(["train", "resnet", "--data", str(tmp_path / "none"), "--arch", "resnet8"]) == 2
    assert "menagerie train: error: data root" in error_text(capsys)
    (tmp_path / "train").mkdir()
    assert main(["train", "resnet", "--data", str(tmp_path), "--arch", "resnet8", "--loader", "torchvision"]) == 2
    assert "has no class sub-folders" in error_text(capsys)
    assert main(["train", "resnet", "--data", str(tmp_path), "--loader", "ffcv"]) == 2
    assert "train.beton does not exist" in error_text(capsys)


def test_cli_rejects_unknown_arch_and_loader(capsys):
    for option, value in (("--arch", "resnet51"), ("--loader", "pillow")):
        with pytest.raises(SystemExit) as stop:
            main(["train", "resnet", "--data", ".", option, value])
        assert stop.value.code == 2
        assert "invalid choice" in capsys.readouterr().err


def test_cli_data_commands(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path / "syn"), "--classes", "3", "--train-per-class", "4",
                 "--val-per-class", "2", "--size", "24"]) == 0
    assert len(list((tmp_path / "syn" / "train").rglob("*.jpg"))) == 12
    assert len(list((tmp_path / "syn" / "val").rglob("*.jpg"))) == 6
    assert main(["data", "to-ffcv", str(tmp_path / "syn" / "train"), str(tmp_path / "syn" / "train.beton"),
                 "--workers", "1"]) == 0
    assert (tmp_path / "syn" / "train.beton").stat().st_size > 0
    assert main(["data", "to-ffcv", str(tmp_path / "missing"), str(tmp_path / "x.beton")]) == 2
    assert "does not exist" in error_text(capsys)


@pytest.mark.parametrize("loader", ["ffcv", "dali"])
def test_training_runs_with_each_fast_loader(tmp_path, loader):
    from models.data.convert import to_ffcv
    from models.data.folders import write_synthetic

    for split, per_class in (("train", 8), ("val", 2)):
        write_synthetic(tmp_path / split, 4, per_class, size=24, seed=len(split))
        to_ffcv(tmp_path / split, tmp_path / f"{split}.beton", workers=1)
    out = tmp_path / "out"
    assert main(["train", "resnet", "--data", str(tmp_path), "--arch", "resnet8", "--loader", loader, "--epochs", "1",
                 "--warmup-epochs", "0.5", "--eval-every", "1", "--batch-size", "8", "--accumulation", "2",
                 "--image-size", "16", "--workers", "1", "--out", str(out)]) == 0
    result = json.loads(next(out.glob("*.json")).read_text())["result"]
    assert len(result["step_losses"]) == 4 and len(result["evaluations"]) == 1
