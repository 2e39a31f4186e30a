"""Every ``--help`` answers with examples, and the shared options mean the same everywhere."""

import pytest

from lngraph.cli.main import build_parser

COMMANDS = [[], ["demo"], ["import"], ["import", "nih"], ["import", "slicer"],
            ["import", "dls"], ["import", "seg"], ["synth"], ["train"], ["match"], ["models"],
            ["track"], ["evaluate"], ["bench"], ["tune"]]


def _help(words, capsys) -> str:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*words, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "lngraph")
def test_every_help_ends_with_examples(words, capsys):
    text = _help(words, capsys).rstrip()
    block = text.rsplit("\n\n", 1)[-1]
    assert block.startswith(("example:", "examples:")), block
    assert all(line.startswith("  lngraph") for line in block.splitlines()[1:])


@pytest.mark.parametrize("words", [["train"], ["match"], ["track"], ["evaluate"], ["demo"]])
def test_device_choices_are_shared(words, capsys):
    assert "--device {auto,cpu,cuda}" in _help(words, capsys)


@pytest.mark.parametrize("words", [["train"], ["match"], ["track"], ["evaluate"], ["tune"],
                                   ["demo"]])
def test_cache_dir_is_spelled_alike(words, capsys):
    text = _help(words, capsys)
    assert "--cache-dir DIR" in text and "--cache " not in text


def test_the_cohort_is_positional_everywhere(capsys):
    for words in (["train"], ["match"], ["track"], ["evaluate"], ["bench"], ["tune"]):
        assert "COHORT" in _help(words, capsys).split("\n\n")[0], words
