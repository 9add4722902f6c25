"""The plugin's operators: thin adapters over the ``multireader`` package."""

from .compute_agreement import ComputeAgreement
from .compute_consensus import ComputeConsensus
from .compute_embeddings import ComputeEmbeddings
from .compute_lesion_agreement import ComputeLesionAgreement
from .compute_mistakenness import ComputeMistakenness
from .compute_quality_metrics import ComputeQualityMetrics
from .compute_recist_agreement import AdjudicateResponse, ComputeRecistAgreement
from .compute_uniqueness import ComputeUniqueness
from .compute_visualization import ComputeVisualization
from .declare_label_schema import DeclareLabelSchema
from .delete_study import DeleteStudy
from .evaluate_model import EvaluateModel
from .export_audit_report import ExportAuditReport
from .find_disagreement_clusters import FindDisagreementClusters
from .fit_label_model import FitLabelModel
from .flag_for_reread import FlagForReread
from .import_dicom import ImportDicom
from .import_measurements import ImportMeasurements
from .import_predictions import ImportPredictions
from .import_reader_labels import ImportReaderLabels
from .lineage_ops import (
    DeleteTrainingSet,
    DiffTrainingSets,
    ExportAuditLog,
    FreezeTrainingSet,
    ReviseLabel,
    VerifyAuditLog,
    VerifyTrainingSet,
)
from .manage_runs import ManageRuns
from .render_window_presets import RenderWindowPresets
from .zero_shot_classify import ZeroShotClassify

OPERATORS = (
    ImportDicom,
    ImportReaderLabels,
    ImportMeasurements,
    ImportPredictions,
    DeclareLabelSchema,
    RenderWindowPresets,
    ComputeAgreement,
    ComputeConsensus,
    ComputeLesionAgreement,
    ComputeRecistAgreement,
    AdjudicateResponse,
    ManageRuns,
    ComputeVisualization,
    ComputeUniqueness,
    ComputeEmbeddings,
    ComputeQualityMetrics,
    FindDisagreementClusters,
    FitLabelModel,
    ComputeMistakenness,
    FlagForReread,
    EvaluateModel,
    ZeroShotClassify,
    ReviseLabel,
    FreezeTrainingSet,
    VerifyTrainingSet,
    DiffTrainingSets,
    DeleteTrainingSet,
    VerifyAuditLog,
    ExportAuditLog,
    ExportAuditReport,
    DeleteStudy,
)

# every operator appends to the dataset's audit log (App, operator browser, SDK, workers)
from ._auditing import audited  # noqa: E402

OPERATORS = tuple(audited(cls) for cls in OPERATORS)
