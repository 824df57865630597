"""The fusion model zoo: the systems of ``models.py``, and the ones in their own modules, which
import ``models.py`` (so it cannot import them) and are registered in its ``SYSTEMS`` here."""

from mimicflow.fusion.models import SYSTEMS
from mimicflow.fusion.taemi import Taemi

SYSTEMS["taemi"] = Taemi
