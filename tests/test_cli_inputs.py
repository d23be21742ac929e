"""Interfaces people expect and bad input: one line naming the value and what is allowed, exit 2."""
import pytest
from click.testing import CliRunner

from perfmodel import hardware
from perfmodel.cli import main as cli
from perfmodel.errors import PerfmodelError


@pytest.mark.parametrize("given,name", [("h100", "H100-SXM5"), ("H100-sxm5", "H100-SXM5"), ("v100", "V100-SXM2"),
                                        ("CPU-GENERIC", "cpu-generic"), ("tit", "TitanX-Maxwell")])
def test_hardware_names_case_insensitive_and_unique_prefixes(given, name):
    assert hardware.resolve_name(given) == name


def test_ambiguous_prefix_and_did_you_mean():
    with pytest.raises(PerfmodelError, match=r"'H' is ambiguous: it starts .*H100-SXM5.*H200"):
        hardware.resolve_name("H")
    res = CliRunner().invoke(cli, ["predict", "--model", "mlp", "--width", "64", "--hardware", "V100-SMX2"])
    assert res.exit_code == 2 and "did you mean V100-SXM2?" in res.output
    assert len(res.output.strip().splitlines()) == 1
