"""JSON sidecars: identifying keys removed at any depth; only key names are reported."""

from __future__ import annotations

from bids_deface.metadata.policy import SidecarPolicy, load_sidecar_policy


def scrub_sidecar(metadata: dict, policy: SidecarPolicy | None = None) -> tuple[dict, list[str]]:
    """A copy of ``metadata`` without the keys ``policy`` removes, at any depth.

    Input: a sidecar as a dict (nested objects and lists of objects are scrubbed too) and a
    policy (default: the shipped one). Output: ``(scrubbed copy, removed key names)``; nested
    names are dotted paths (``"Parent.Child"``, ``"List[0].Child"``). Never values.
    """
    policy = load_sidecar_policy() if policy is None else policy
    removed: list[str] = []

    def scrub(value, path: str):
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                name = f"{path}.{key}" if path else str(key)
                if policy.removes(str(key)):
                    removed.append(name)
                else:
                    out[key] = scrub(item, name)
            return out
        if isinstance(value, list):
            return [scrub(item, f"{path}[{i}]") for i, item in enumerate(value)]
        return value

    return scrub(metadata, ""), removed

