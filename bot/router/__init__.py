"""The site's OpenWrt router: reach it, find out what it is, install, configure, watch.

Modules, each small and named for what it holds:

- ``access``        first contact (password or key file), camreach's key, LAN/tunnel targets
- ``pool``          SSH connections kept for reuse
- ``modems``        the USB id -> modem/mode and mode -> protocol/packages/device tables
- ``facts``         the router as typed facts, parsed from the detection report
- ``detect``        the one-round-trip detection script; which modem, which mode, CGNAT
- ``packages``      installing what the modem needs, online or from files this host fetched
- ``site_config``   site spec + detection + keys + droplet -> ``RouterConfig``
- ``push_scripts``  the router-side shell of a push (constant texts)
- ``push_plan``     round trip 1: read the committed config, diff it against the wanted one
- ``push_remote``   round trips 2 and 3: apply with the rollback armed, confirm
- ``push``          the whole push: confirm over the path that must work, tell what happened
- ``modem_status``  signal, operator and registration from uqmi, AT commands or HiLink
- ``frames``        length-framed multi-part output of remote scripts
- ``service``       ``RouterService``: the above against the database, secrets and droplet
"""

from bot.router.detect import Detection, ModemFinding, RouterFacts
from bot.router.modem_status import ModemStatus
from bot.router.packages import FeedConfig, InstallResult
from bot.router.push import PushBlocked, PushNotApplied, PushPlan, PushResult, PushRolledBack
from bot.router.service import FirstContact, RouterService

__all__ = [
    "Detection",
    "FeedConfig",
    "FirstContact",
    "InstallResult",
    "ModemFinding",
    "ModemStatus",
    "PushBlocked",
    "PushNotApplied",
    "PushPlan",
    "PushResult",
    "PushRolledBack",
    "RouterFacts",
    "RouterService",
]
