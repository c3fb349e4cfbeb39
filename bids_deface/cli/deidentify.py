"""The de-identification settings of a participant run, checked before any image is touched: the
metadata policy, the methods' key, the participant relabelling, the values removed from each
participant, and what the run records about them (paths relative to the dataset, never values).

Every problem with a setting is a :class:`UsageError` (one line, exit status 2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from bids_deface.cli.parser import UsageError
from bids_deface.dataset.naming import strip_prefix


@dataclass
class Deidentification:
    policy: object
    deidentifier: object
    relabel: object
    hash_key_file: Path | None = None
    known: object = None
    subjects: list[str] = field(default_factory=list)


def load_settings(opts) -> Deidentification:
    """Policy, key and relabelling of ``opts``; a bad one is a one-line usage error."""
    from bids_deface.dataset.relabel import RelabelError, load_relabeller
    from bids_deface.metadata import Deidentifier, MethodError, PolicyError, load_hash_key, load_metadata_policy

    key_file = getattr(opts, "hash_key_file", None)
    try:
        policy = load_metadata_policy(opts.metadata_policy)
        deidentifier = Deidentifier(hash_key=load_hash_key(key_file))
        policy.check_methods(deidentifier)
    except (PolicyError, MethodError) as exc:
        raise UsageError(str(exc)) from None
    try:
        relabel = load_relabeller(getattr(opts, "relabel_participants", None))
    except RelabelError as exc:
        raise UsageError(f"--relabel-participants {exc}") from None
    if relabel.active and opts.output_layout != "raw":
        raise UsageError("--relabel-participants renames the dataset's files: it needs --output-layout raw")
    return Deidentification(policy, deidentifier, relabel, key_file)


def selected_subjects(opts) -> list[str]:
    """The participants this run copies (raw layout) or defaces: given labels, else every sub-*."""
    if opts.participant_label:
        return sorted({strip_prefix(label, "sub") for label in opts.participant_label})
    return sorted(strip_prefix(p.name, "sub") for p in opts.bids_dir.glob("sub-*") if p.is_dir())


def prepare_participants(opts, settings: Deidentification, images) -> list:
    """Removed values of the selected participants, their relabelling checked (and its map
    written where the curator asked); returns the images as the outputs name them."""
    from bids_deface.dataset.knownvalues import collect_known_values
    from bids_deface.dataset.relabel import RelabelError, check_selected

    settings.subjects = selected_subjects(opts)
    sessions = sorted({strip_prefix(p.name, "ses") for label in settings.subjects
                       for p in (opts.bids_dir / f"sub-{label}").glob("ses-*") if p.is_dir()})
    try:
        check_selected(settings.relabel, settings.subjects, sessions)
    except RelabelError as exc:
        raise UsageError(f"--relabel-participants {exc}") from None
    if settings.relabel.active and getattr(opts, "relabel_map_file", None):
        settings.relabel.write_map(opts.relabel_map_file)
    settings.known = collect_known_values(opts.bids_dir, settings.subjects, settings.policy,
                                          relabelled=settings.relabel.active)
    return [relabelled(image, settings.relabel) for image in images]


def relabelled(image, relabel):
    """The image as the output names it (its input path unchanged)."""
    if not relabel.active:
        return image
    entities = dict(image.entities)
    entities["subject"] = relabel.subject(image.subject)
    if image.session:
        entities["session"] = relabel.session(image.session)
    return dataclasses.replace(image, relpath=relabel.path(image.relpath), entities=entities)


def scrub_inputs(settings: Deidentification, image) -> dict:
    """What the image's metadata scrub step needs (see interfaces.deface.ScrubMetadata); ``image``
    as the input names it."""
    inputs = {"known_values": settings.known.subject(image.subject) if settings.known else {}}
    reference = settings.known.references.get(image.subject) if settings.known else None
    if reference is not None:
        inputs["reference_time"] = reference.isoformat()
    if settings.hash_key_file:
        inputs["hash_key_file"] = str(settings.hash_key_file)
    return inputs


def fingerprint(opts, settings: Deidentification, images) -> str:
    """What shapes every copied file besides its own content: another value of any of these
    makes a rerun write the copy anew instead of skipping verified files."""
    from bids_deface.dataset.provenance import package_version
    from bids_deface.metadata import shipped_policy_path

    parts = [package_version(), shipped_policy_path().read_bytes()]
    if opts.metadata_policy:
        parts.append(Path(opts.metadata_policy).read_bytes())
    methods = settings.deidentifier
    # keyed values: a digest under the key itself, so the fingerprint tells nothing of it
    parts.append(hmac.new(methods.surrogate_key, b"fingerprint", hashlib.sha256).hexdigest())
    relabel = settings.relabel
    if relabel.key is not None:
        parts.append(hmac.new(relabel.key, b"fingerprint", hashlib.sha256).hexdigest())
    parts += sorted(f"{k}>{v}" for k, v in relabel.subjects.items()) if relabel.key is None else []
    # a vault: files copied before it was asked for were never sealed
    parts += [str(getattr(opts, "vault_dir", None) or ""), *sorted(map(str, getattr(opts, "vault_recipient", None) or []))]
    parts += [",".join(settings.subjects), ",".join(opts.session_label or []), ",".join(opts.suffix or []),
              ",".join(sorted(image.relpath for image in images))]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\x00")
    return digest.hexdigest()


def safe_command_line(argv: list[str], opts) -> list[str]:
    """The command line as the output records it: option names and plain values kept; paths,
    labels and anything else a person could be found by replaced with ``<…>``."""
    from bids_deface.features import FEATURES

    plain = {"participant", "group", "raw", "derivative", "MultiProc", "Linear", "SLURM", "SGE", "PBS", "LSF",
             *FEATURES}
    out = []
    for arg in argv:
        if arg.startswith("-"):
            out.append(arg.split("=", 1)[0] + ("=<value>" if "=" in arg else ""))
        elif arg in plain or arg.replace(".", "", 1).isdigit() or arg in (opts.suffix or []):
            out.append(arg)
        else:
            out.append("<value>")
    return out


def read_image_metadata(bids_dir: Path, images) -> tuple[list, dict[str, str]]:
    """The images with their merged sidecar metadata, and {relpath: reason} for those whose
    sidecars cannot be used (that image fails, the others go on)."""
    from bids_deface.dataset.sidecars import SidecarError, image_metadata

    ready, unusable = [], {}
    for image in images:
        try:
            ready.append(dataclasses.replace(image, metadata=image_metadata(bids_dir, image.relpath)))
        except SidecarError as exc:
            ready.append(image)
            unusable[image.relpath] = f"{image.relpath}: not defaced: its sidecar cannot be used: {exc}"
    return ready, unusable


def table_rows(opts, settings: Deidentification) -> list[str]:
    """The participants whose rows the raw copy's tables keep (as the output names them): the
    selected ones, and those an earlier run already put in the output."""
    present = {strip_prefix(p.name, "sub") for p in opts.output_dir.glob("sub-*") if p.is_dir()}
    return sorted({settings.relabel.subject(label) for label in settings.subjects} | present)


def job_with_values(job: dict, settings: Deidentification, sources: dict) -> dict:
    """An image's job with its participant's removed values and reference time (``sources``:
    output relpath -> the input image), matched by its ``relpath``."""
    values = scrub_inputs(settings, sources[job["relpath"]]) if job.get("relpath") in sources else {}
    values.pop("hash_key_file", None)  # in the run's settings
    return {**job, **values}


def participant_values(wf, by_name: dict, settings: Deidentification, sources: dict) -> None:
    """Give each node's job (``job``) or jobs (a session's, ``jobs``) their participant's removed
    values and reference time (``by_name``: the workflow's node names)."""
    for name in by_name:
        inputs = wf.get_node(name).inputs
        if hasattr(inputs, "job"):
            inputs.job = job_with_values(dict(inputs.job), settings, sources)
        elif hasattr(inputs, "jobs"):
            inputs.jobs = [job_with_values(dict(job), settings, sources) for job in inputs.jobs]
