"""The plugin's App panels (agreement heatmap, slice confusion, reader profiles, audit log,
lesion agreement, RECIST timeline).

Each panel is a thin adapter over the ``multireader`` package; this is where they register.
"""

from .agreement_heatmap import AgreementHeatmap
from .audit_log import AuditLog
from .lesion_agreement import LesionAgreement
from .reader_profiles import ReaderProfiles
from .recist_timeline import RecistTimeline
from .slice_confusion import SliceConfusion

PANELS = (
    SliceConfusion,
    ReaderProfiles,
    AgreementHeatmap,
    AuditLog,
    LesionAgreement,
    RecistTimeline,
)
