"""Detection: which training samples share the corruption a user found or saw.

Three starts, one output (`candidates.Detection`: the samples to forget, ranked, and a summary):

* `detect` (`identified.py`): from training samples the user identified, ranked by the signal
  the held-out identified samples prefer (`signals.py`: similarity, spectral, label-quality);
* `detect_from_queries` and `detect_confused` (`symptoms.py`): from test-time images that
  misbehave, or from two classes the model mixes up.

All read the classifier's input features of the trained-on samples (`features.py`), from the model
itself or from one never trained on the corrupted labels (`--features-from`, e.g. its pretrained init).
"""

from remcli.detection.candidates import Detection
from remcli.detection.features import feature_model
from remcli.detection.identified import detect
from remcli.detection.signals import DETECT_SIGNALS, signal_choices
from remcli.detection.symptoms import CONFUSED_SIGNALS, QUERY_SIGNALS, detect_confused, detect_from_queries

__all__ = [
    "CONFUSED_SIGNALS",
    "DETECT_SIGNALS",
    "QUERY_SIGNALS",
    "Detection",
    "detect",
    "detect_confused",
    "detect_from_queries",
    "feature_model",
    "signal_choices",
]
