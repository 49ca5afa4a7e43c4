from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.errors import ValidationFailed
from bot.site import load_site_file, parse_site

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_is_valid_and_complete() -> None:
    spec = load_site_file(EXAMPLE)
    assert spec.name == "farmhouse"
    assert str(spec.vpn.server_address) == "10.8.0.1"
    assert str(spec.vpn.router_address) == "10.8.0.2"
    # Every field of the model is written out in the example (documented), none left implicit.
    doc = example()
    for section in ("droplet", "vpn", "router", "modem"):
        model_fields = set(type(getattr(spec, section)).model_fields)
        written = set(doc[section]) | _commented_fields(section)
        assert model_fields <= written, f"{section}: undocumented {model_fields - written}"
    assert set(type(spec.cameras[0]).model_fields) <= set(doc["cameras"][0])


def _commented_fields(section: str) -> set[str]:
    text = EXAMPLE.read_text().split(f"\n{section}:", 1)[1].split("\n\n", 1)[0]
    return {ln.split("#", 1)[1].strip().split(":")[0] for ln in text.splitlines()
            if ln.strip().startswith("#") and ":" in ln}


def test_every_error_reported_with_path() -> None:
    doc = example()
    doc["name"] = "farm house"
    doc["router"]["bogus"] = 1
    doc["modem"]["apn"] = "a$(reboot)"
    doc["vpn"]["port"] = 70000
    with pytest.raises(ValidationFailed) as err:
        parse_site(doc)
    msg = err.value.user_message
    for path in ("- name:", "- router.bogus: unknown field", "- modem.apn:", "- vpn.port:"):
        assert path in msg, msg


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["router"].update(key_file="/k"), "exactly one of password_env or key_file"),
        (lambda d: d["vpn"].update(subnet="192.168.1.0/25"), "overlaps router.lan_subnet"),
        (lambda d: d["cameras"][0].update(host="10.1.1.1"), "not in router.lan_subnet"),
        (lambda d: d["cameras"].append(dict(d["cameras"][0])), "two cameras are named"),
        (lambda d: d["router"].update(password_env="hunter2 secret"), "NAME of an environment"),
        (lambda d: d["modem"].update(protocol="ncm", apn=None), "needs an apn"),
        (lambda d: d["cameras"][0].update(host="192.168.1.999"), "cameras.0.host"),
        (lambda d: d["vpn"].update(subnet="8.8.8.0/24"), "private range"),
    ],
)
def test_invalid_values(mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    doc = example()
    mutate(doc)
    with pytest.raises(ValidationFailed) as err:
        parse_site(doc)
    assert expected in err.value.user_message


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrouter: [unclosed\n")
    with pytest.raises(ValidationFailed, match="line 3"):
        load_site_file(bad)


def test_not_a_mapping(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValidationFailed, match="mapping"):
        load_site_file(bad)
