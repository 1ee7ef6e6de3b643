"""``menagerie train``: each flag's default is its config field's default, written once in the dataclass."""

from pathlib import Path

from menagerie.harness.cli import build_parser
from menagerie.harness.cli.common import config_from
from menagerie.models import sae, train_resnet


def parsed(*argv):
    return build_parser(list(argv)).parse_args(list(argv))


def test_resnet_flags_default_to_train_config():
    config = config_from(parsed("train", "resnet", "--data", "images"), train_resnet.TrainConfig)
    assert config == train_resnet.TrainConfig(data=Path("images"))


def test_resnet_flags_reach_train_config():
    args = parsed(
        "train",
        "resnet",
        "--data",
        "images",
        "--target",
        "0.5",
        "--no-augment",
        "--compile",
        "--eval-offset",
        "1",
        "--batch-size",
        "64",
    )
    config = config_from(args, train_resnet.TrainConfig)
    assert (config.target, config.augment, config.compile, config.eval_offset, config.batch_size) == (
        0.5,
        False,
        True,
        1,
        64,
    )


def test_sae_flags_default_to_its_train_config():
    config = config_from(parsed("train", "sae", "--activations", "acts"), sae.TrainConfig, latents=64)
    assert config == sae.TrainConfig(latents=64, k=32)
    config = config_from(
        parsed("train", "sae", "--activations", "acts", "--no-auxk", "--steps", "7"), sae.TrainConfig, latents=64
    )
    assert (config.auxk, config.steps) == (False, 7)
