"""Every workspace ``make_demo_workspace.py`` can build: the demo generator's presets (tiny, demo,
large) and the field generator's (field-tiny, field), behind one ``build``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from tao_aoi import atomic
from tao_aoi.errors import UserError
from tao_aoi.layout import Workspace
from tao_aoi.workspace import builder, demo, field

GENERATORS = (demo, field)  # each: PRESETS, LIGHTS, IMAGE_SIZE, IMAGE_EXT, write(ws, preset, seed, say)


def preset_names() -> tuple[str, ...]:
    """Every preset make_demo_workspace.py offers: the demo generator's, then the field generator's."""
    return tuple(name for g in GENERATORS for name in g.PRESETS)


def generator(preset: str):
    for g in GENERATORS:
        if preset in g.PRESETS:
            return g
    raise UserError(f"--preset {preset!r} is not one of {', '.join(preset_names())}")


def spec_dict(preset: str = "demo", *, lights: Sequence[str] | None = None, image_size: int | None = None,
              image_ext: str | None = None) -> dict:
    """The baseline spec a preset's workspace ships (``builder.spec``), with its generator's lights,
    crop size and image format unless given."""
    g = generator(preset)
    return builder.spec(g.PRESETS[preset].rows, g.LIGHTS if lights is None else lights,
                        g.IMAGE_SIZE if image_size is None else image_size,
                        g.IMAGE_EXT if image_ext is None else image_ext)


def build(out: str | Path, preset: str = "demo", seed: int = 0, *, force: bool = False,
          progress: Callable[[str], None] | None = None) -> dict:
    """Write the workspace at ``out`` (atomically: a failure leaves nothing). Returns the manifest.

    ``preset`` picks the generator too: tiny/demo/large are the demo generator's scenes, field* the
    independent field generator's."""
    g = generator(preset)
    target = Path(out).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        raise UserError(f"{target} already exists and is not empty; choose another --out or pass --force to "
                        f"replace it")
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    with atomic.atomic_dir(target) as tmp:
        manifest = g.write(Workspace(tmp), preset, seed, say)
        manifest["build_sec"] = round(time.perf_counter() - started, 3)
        atomic.write_json(tmp / "demo_manifest.json", manifest, fsync=False)
    return manifest


def describe(manifest: Mapping) -> str:
    """Human summary of a manifest (printed by the CLI)."""
    fam = manifest["families"]
    lines = [f"preset {manifest['preset']} seed {manifest['seed']}: {manifest['files_written']} images in "
             f"{manifest.get('build_sec', 0):.1f} s"]
    for split in ("train", "val", "kpi", "mining"):
        c = manifest["counts"][split]
        lines.append(f"  {split:7s} " + ", ".join(f"{k}={v['easy'] + v['hard']}" for k, v in sorted(c.items())))
    lines.append("  sdg     " + ", ".join(f"{k}={v}" for k, v in manifest["counts"]["sdg"].items()))
    lines.append(f"  missing from base train: {', '.join(fam['missing_from_base_train'])}; "
                 f"rare: {', '.join(fam['rare_in_base_train']) or 'none'}")
    return "\n".join(lines)
