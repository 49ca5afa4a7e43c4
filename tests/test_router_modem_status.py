"""Modem status: the parsers on realistic outputs, and the readout on the real router.

Sample outputs: uqmi's JSON as printed by openwrt/uqmi ``commands-nas.c``
(``--get-signal-info``, ``--get-serving-system``); AT responses as 3GPP TS 27.007 defines
them and as Huawei sticks answer ``AT^HCSQ?``; HiLink XML as the E3372h web API serves it.

There is no modem in the chroot, so the router-side tests replace the one tool each
protocol uses with the smallest stand-in that answers like the modem would: a ``uqmi``
script, a ``gcom`` script, and, for HiLink, an HTTP server on the test's side of the router's
LAN link in place of the stick's 192.168.8.1 (fetched by the router's own uclient-fetch).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bot.adapters.ssh import ssh_session
from bot.router.modem_status import (
    ModemStatus,
    parse_at,
    parse_hilink,
    parse_uqmi,
    read_modem_status,
)
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_support import first_contact, target

UQMI_SIGNAL = '{"type":"lte","rssi":-67,"rsrq":-9,"rsrp":-95,"snr":12.4}'
UQMI_SERVING = ('{"registration":"registered","plmn_mcc":404,"plmn_mnc":45,'
                '"plmn_description":"airtel","roaming":false}')
AT = {
    "AT+CSQ": "AT+CSQ\r\n+CSQ: 23,99\r\n\r\nOK\r\n",
    "AT^HCSQ?": 'AT^HCSQ?\r\n^HCSQ: "LTE",52,38,160,22\r\n\r\nOK\r\n',
    "AT+COPS?": 'AT+COPS?\r\n+COPS: 0,0,"airtel",7\r\n\r\nOK\r\n',
    "AT+CREG?": "AT+CREG?\r\n+CREG: 0,1\r\n\r\nOK\r\n",
    "AT+CEREG?": "AT+CEREG?\r\n+CEREG: 0,1\r\n\r\nOK\r\n",
}
HILINK_SIGNAL = """<?xml version="1.0" encoding="UTF-8"?>
<response>
<pci>311</pci>
<sc></sc>
<cell_id>27718913</cell_id>
<rsrq>-11.0dB</rsrq>
<rsrp>-98dBm</rsrp>
<rssi>-71dBm</rssi>
<sinr>7dB</sinr>
<rscp></rscp>
<ecio></ecio>
<mode>7</mode>
</response>
"""
HILINK_PLMN = """<?xml version="1.0" encoding="UTF-8"?>
<response><State>0</State><FullName>airtel</FullName><ShortName>airtel</ShortName>
<Numeric>40445</Numeric><Rat>7</Rat></response>
"""
HILINK_STATUS = """<?xml version="1.0" encoding="UTF-8"?>
<response><ConnectionStatus>901</ConnectionStatus><SignalIcon>4</SignalIcon>
<CurrentNetworkType>19</CurrentNetworkType><CurrentServiceDomain>3</CurrentServiceDomain>
<RoamingStatus>0</RoamingStatus><ServiceStatus>2</ServiceStatus>
<CurrentNetworkTypeEx>101</CurrentNetworkTypeEx></response>
"""
HILINK_LOGIN = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                "<error><code>125002</code><message></message></error>\n")


def test_uqmi_lte() -> None:
    s = parse_uqmi(UQMI_SIGNAL, UQMI_SERVING)
    assert (s.rssi_dbm, s.rsrp_dbm, s.rsrq_db, s.sinr_db) == (-67, -95, -9, 12.4)
    assert (s.operator, s.registration, s.network_type) == ("airtel", "registered", "LTE")
    assert "Operator: airtel (LTE), registered" in s.summary()


def test_uqmi_newer_list_form_and_roaming_without_a_name() -> None:
    signal = '[{"type":"lte","rssi":-80,"rsrq":-12,"rsrp":-110,"snr":1.5},{"type":"5gnr"}]'
    serving = '{"registration":"registered","plmn_mcc":262,"plmn_mnc":1,"roaming":true}'
    s = parse_uqmi(signal, serving)
    assert (s.rsrp_dbm, s.registration, s.operator) == (-110, "roaming", "26201")


def test_uqmi_without_a_modem_answer() -> None:
    s = parse_uqmi("Request canceled\n", "")
    assert s.rssi_dbm is None and s.registration == "unknown" and s.problems
    assert "RSSI unknown" in s.summary() and "Operator: unknown" in s.summary()


def test_huawei_at_commands() -> None:
    s = parse_at(AT)
    # ^HCSQ: RSSI -120+52, RSRP -140+38, SINR -20+0.2*160, RSRQ -19.5+0.5*22
    assert (s.rssi_dbm, s.rsrp_dbm, s.sinr_db, s.rsrq_db) == (-68, -102, 12.0, -8.5)
    assert (s.operator, s.network_type, s.registration) == ("airtel", "LTE", "registered")


def test_plain_at_commands_of_a_3g_stick() -> None:
    s = parse_at({
        "AT+CSQ": "+CSQ: 14,99\r\nOK\r\n",
        "AT^HCSQ?": "ERROR\r\n",
        "AT+COPS?": '+COPS: 0,0,"Vodafone.de",2\r\nOK\r\n',
        "AT+CREG?": "+CREG: 2,5,\"1A2B\",\"00C3D4E5\"\r\nOK\r\n",
        "AT+CEREG?": "ERROR\r\n",
    })
    assert (s.rssi_dbm, s.rsrp_dbm) == (-85, None)  # -113 + 2*14
    assert (s.operator, s.network_type, s.registration) == ("Vodafone.de", "UMTS", "roaming")


@pytest.mark.parametrize(("creg", "state"), [("0,0", "not-registered"), ("0,2", "searching"),
                                             ("0,3", "denied"), ("0,4", "unknown")])
def test_registration_states(creg: str, state: str) -> None:
    assert parse_at({"AT+CREG?": f"+CREG: {creg}\r\nOK"}).registration == state


def test_csq_99_is_unknown() -> None:
    assert parse_at({"AT+CSQ": "+CSQ: 99,99\r\nOK"}).rssi_dbm is None


def test_hilink_api() -> None:
    s = parse_hilink(HILINK_SIGNAL, HILINK_PLMN, HILINK_STATUS)
    assert (s.rssi_dbm, s.rsrp_dbm, s.rsrq_db, s.sinr_db) == (-71, -98, -11, 7)
    assert (s.operator, s.network_type, s.registration) == ("airtel", "LTE", "registered")
    assert s.problems == ()


def test_hilink_that_wants_a_login_is_unknown_not_a_crash() -> None:
    s = parse_hilink(HILINK_LOGIN, HILINK_LOGIN, "")
    assert s.rssi_dbm is None and s.operator is None and s.registration == "unknown"
    assert any("needs a login (error 125002)" in p for p in s.problems)


def test_random_garbage_never_crashes_a_parser() -> None:
    rng = random.Random(1234)
    alphabet = '{}[]":,+^CSQREGOP<>/abc0123456789-. \r\n\t'
    for _ in range(500):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        for status in (parse_uqmi(junk, junk), parse_hilink(junk, junk, junk),
                       parse_at({"AT+CSQ": junk, "AT^HCSQ?": junk, "AT+COPS?": junk,
                                 "AT+CREG?": junk})):
            assert isinstance(status, ModemStatus)
            status.summary()


# --- the readout on the router, with stand-ins for the modem --------------------------------

def install_script(router: OpenWrtRouter, path: str, text: str) -> None:
    file = router.root / path.lstrip("/")
    if file.is_symlink() or file.exists():
        file.unlink()
    file.write_text(text)
    file.chmod(0o755)


async def test_qmi_readout_through_uqmi(openwrt_router: OpenWrtRouter) -> None:
    router = openwrt_router
    install_script(router, "/sbin/uqmi", f"""#!/bin/sh
echo "$@" >> /tmp/uqmi-calls
case "$*" in
	*--get-signal-info*) echo '{UQMI_SIGNAL}' ;;
	*--get-serving-system*) echo '{UQMI_SERVING}' ;;
	*) exit 1 ;;
esac
""")
    key, pinned = await first_contact(router)
    async with ssh_session(target(router, key, pinned)) as conn:
        status = await read_modem_status(conn, "qmi", "/dev/cdc-wdm0")
    assert (status.source, status.rsrp_dbm, status.operator) == ("uqmi", -95, "airtel")
    calls = (router.root / "tmp/uqmi-calls").read_text().splitlines()
    assert all("-d /dev/cdc-wdm0" in c for c in calls) and len(calls) == 2


async def test_ncm_readout_through_at_commands(openwrt_router: OpenWrtRouter) -> None:
    router = openwrt_router
    cases = "\n".join(f"\t'{cmd}') printf '%s' '{reply}' ;;" for cmd, reply in AT.items())
    install_script(router, "/usr/bin/gcom", f"""#!/bin/sh
[ "$1 $2 $3 $4" = "-d /dev/ttyUSB0 -s /etc/gcom/runcommand.gcom" ] || exit 2
case "$COMMAND" in
{cases}
esac
""")
    key, pinned = await first_contact(router)
    async with ssh_session(target(router, key, pinned)) as conn:
        status = await read_modem_status(conn, "ncm", "/dev/ttyUSB0")
    assert (status.source, status.rsrp_dbm, status.sinr_db, status.registration) == (
        "at", -102, 12.0, "registered")


@pytest.fixture
async def hilink_stick(openwrt_router: OpenWrtRouter) -> AsyncIterator[str]:
    pages = {"/api/device/signal": HILINK_SIGNAL, "/api/net/current-plmn": HILINK_PLMN,
             "/api/monitoring/status": HILINK_STATUS}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(text=pages.get(request.path, HILINK_LOGIN),
                            content_type="text/xml")

    app = web.Application()
    app.router.add_get("/{path:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, openwrt_router.host_addr, 0).start()
    yield f"{openwrt_router.host_addr}:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_hilink_readout_through_the_sticks_web_api(
    openwrt_router: OpenWrtRouter, hilink_stick: str
) -> None:
    key, pinned = await first_contact(openwrt_router)
    async with ssh_session(target(openwrt_router, key, pinned)) as conn:
        status = await read_modem_status(conn, "dhcp", "eth1", hilink_host=hilink_stick)
    assert (status.source, status.rssi_dbm, status.operator, status.network_type) == (
        "hilink", -71, "airtel", "LTE")


async def test_no_tool_answering_gives_unknown(openwrt_router: OpenWrtRouter) -> None:
    router = openwrt_router
    install_script(router, "/sbin/uqmi", "#!/bin/sh\necho 'Request timed out' >&2\nexit 1\n")
    key, pinned = await first_contact(router)
    async with ssh_session(target(router, key, pinned)) as conn:
        qmi = await read_modem_status(conn, "qmi", "/dev/cdc-wdm0")
        bad = await read_modem_status(conn, "qmi", "/dev/../etc/passwd; reboot")
        mbim = await read_modem_status(conn, "mbim", "/dev/cdc-wdm0")
    assert qmi.rssi_dbm is None and qmi.registration == "unknown" and qmi.problems
    assert bad.source == "none" and "detect the modem" in bad.problems[0]
    assert mbim.source == "none" and "not supported yet" in mbim.problems[0]
