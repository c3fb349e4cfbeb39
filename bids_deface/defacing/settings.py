"""What a run asks for, and what one image's outputs are: plain data that crosses process and node
boundaries (nipype passes it as dictionaries)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from bids_deface.features import FEATURES


@dataclass(frozen=True)
class RunSettings:
    """The run's choices, the same for every image."""

    output_dir: str
    output_layout: str = "derivative"  # or "raw"
    features: tuple[str, ...] = FEATURES
    margins: dict = field(default_factory=dict)  # distortion parameters (bids_deface.distort.Params)
    policy_file: str | None = None  # user metadata policy
    hash_key_file: str | None = None  # key of the metadata 'hash' method
    qc: bool = False  # renders, face check, brain check, and the QC gate
    qc_override: tuple[str, ...] = ()  # QC checks ("face", "ears") whose finding does not refuse (--qc-override)
    allow_partial: bool = False  # deface with what was found when a feature cannot be shown gone
    threads: int = 1  # for the detector network
    labels_dir: str | None = None  # the curator's copy of the feature labels (never in the output)
    vault_dir: str | None = None  # encrypted entries of what was removed (bids_deface.vault)
    vault_recipients: tuple[str, ...] = ()  # public keys (PEM) of those who may restore

    def as_dict(self) -> dict:
        return {**asdict(self), "features": list(self.features), "vault_recipients": list(self.vault_recipients),
                "qc_override": list(self.qc_override)}

    @classmethod
    def from_dict(cls, data: dict) -> "RunSettings":
        return cls(**{**data, "features": tuple(data.get("features", FEATURES)),
                      "vault_recipients": tuple(data.get("vault_recipients", ())),
                      "qc_override": tuple(data.get("qc_override", ()))})


@dataclass(frozen=True)
class ImageJob:
    """One image to deface: where it is, what it is, where its outputs go."""

    path: str  # the input file (absolute; never written, never logged)
    relpath: str  # its path in the dataset: how every message names it
    bids_dir: str  # the input dataset (absolute; never written, never logged)
    outputs: dict  # bids_deface.dataset.naming.OutputPaths as a dict (relative to output_dir)
    seed: int  # of the ear noise
    step_log: str  # where its steps record their outcome
    stem: str  # file name without extension, e.g. sub-01_ses-1_T1w
    suffix: str = ""
    known_values: dict = field(default_factory=dict)  # identifying values removed from the same participant
    reference_time: str | None = None  # the participant's earliest acquisition time (ISO)
    qc_figures_dir: str | None = None  # outside output_dir: QC figures show the original face
    qc_json: str | None = None
    metadata: dict | None = None  # its sidecar metadata after inheritance (None: read in the load step)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ImageJob":
        return cls(**data)
