"""safetensors + architecture name -> PyTorch module, with strict, explained loading."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from scanner.errors import InputError
from scanner.io.model_file import LoadedModel, sha256_file
from scanner.io.spec import InputSpec
from scanner.models import build_model, get_config

_PREFIXES = ("module.", "_orig_mod.", "model.")
_MAX_KEYS_SHOWN = 8


def strip_prefixes(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove DataParallel/compile wrappers' key prefixes (repeatedly, e.g. ``module._orig_mod.``)."""
    stripped: list[str] = []
    changed = True
    while changed and state:
        changed = False
        for p in _PREFIXES[:2]:
            if all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items()}
                stripped.append(p)
                changed = True
    return state, stripped


def infer_num_classes(state: dict[str, torch.Tensor]) -> int:
    """Rows of the last 2-D ``weight`` tensor in file order that looks like a classifier head."""
    heads = [k for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not heads:
        raise InputError("cannot infer the number of classes: no fully connected weight in the file")
    preferred = [k for k in heads if re.search(r"(fc|linear|classifier|head)", k)]
    key = (preferred or heads)[-1]
    return int(state[key].shape[0])


def _infer_in_channels(arch: str, state: dict[str, torch.Tensor], num_classes: int) -> int:
    """Input channels from the file's tensor for the architecture's *first* convolution.

    Why not the first 4-D tensor of the file: safetensors stores keys sorted by name, and in
    common parameter names the stem does not sort first (a WRN's ``block1.*`` comes before its
    ``conv1.weight``), which read 16 input channels off a block's conv.
    """
    from torch import nn

    probe = build_model(arch, num_classes=num_classes, in_channels=3)
    first = next((name for name, m in probe.named_modules() if isinstance(m, nn.Conv2d)), None)
    weight = state.get(f"{first}.weight") if first is not None else None
    if weight is not None and weight.dim() == 4:
        return int(weight.shape[1])
    return 3


def load_safetensors(path: Path, arch: str | None, spec_overrides: dict | None = None
                     ) -> LoadedModel:
    """Load weights into a registered architecture; strict, reporting missing/unexpected keys."""
    from safetensors.torch import load_file

    path = Path(path)
    if arch is None:
        raise InputError(f"{path.name}: a safetensors file holds only weights; pass --arch NAME",
                         hint="see `scan inspect --list-archs` for known names")
    cfg = get_config(arch)
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError, ...
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from exc
    state, stripped = strip_prefixes(state)
    num_classes = infer_num_classes(state)
    in_ch = _infer_in_channels(arch, state, num_classes)
    model = build_model(arch, num_classes=num_classes, in_channels=in_ch)
    result = model.load_state_dict(state, strict=False)
    # BatchNorm's num_batches_tracked is bookkeeping some exporters drop: not a mismatch.
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        def fmt(keys: list[str]) -> str:
            more = f" (+{len(keys) - _MAX_KEYS_SHOWN} more)" if len(keys) > _MAX_KEYS_SHOWN else ""
            return ", ".join(keys[:_MAX_KEYS_SHOWN]) + more
        parts = []
        if missing:
            parts.append(f"missing keys: {fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {fmt(unexpected)}")
        raise InputError(f"{path.name} does not match architecture {arch!r}: " + "; ".join(parts),
                         hint="check --arch; key prefixes module./_orig_mod. are stripped automatically")
    overrides = {k: v for k, v in (spec_overrides or {}).items() if v is not None}
    h, w = overrides.get("size", (cfg.input_size, cfg.input_size))
    spec = InputSpec(layout="NCHW", channels=in_ch, height=h, width=w,
                     value_range=overrides.get("value_range", (0.0, 1.0)),
                     mean=overrides.get("mean"), std=overrides.get("std"), fixed_batch=None,
                     sources={"layout": "arch", "size": "flag" if "size" in overrides else "arch",
                              "mean/std": "flag" if overrides.get("mean") else "none"})
    notes = [f"Stripped the key prefix {p!r} (added by a DataParallel or torch.compile "
             "wrapper) from every weight name; the weights are unchanged." for p in stripped]
    return LoadedModel(net=model.eval(), spec=spec, source=path, sha256=sha256_file(path),
                       format="safetensors", num_classes=num_classes, arch=arch,
                       import_notes=notes,
                       has_batchnorm=any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                         for m in model.modules()))


def save_safetensors(net: nn.Module, out: Path, *, source: Path | None = None,
                     metadata: dict[str, str] | None = None) -> Path:
    """Write ``net``'s weights as safetensors atomically, after a strict reload check.

    Why the reload: the file replaces a release artefact; it is only moved into place once every
    tensor reads back identical.
    """
    import os
    import tempfile

    from safetensors.torch import load_file, save_file

    out = Path(out)
    if source is not None and Path(source).exists() and out.exists() \
            and os.path.samefile(source, out):
        raise InputError(f"refusing to overwrite the input model {source}",
                         hint="choose a different --out path")
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(state, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
        back = load_file(str(tmp))
        if set(back) != set(state) or any(not torch.equal(back[k], state[k]) for k in state):
            from scanner.errors import InconclusiveError

            raise InconclusiveError("safetensors write did not read back identically; "
                                    "nothing was written")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
