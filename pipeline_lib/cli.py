"""`python -m pipeline_lib edit|export`: the user-facing commands.

`edit` is the entry point pSp and e4e users expect: a trained M_ref, an identity (a latent seed
of the generator, or an aligned photo, which is projected first) and an attribute photo give
the edited face. The attribute features come from the configured attribute encoder (Inception
v3), whose weights are found as the pipeline finds them: `weights.files.<name>` of the config,
else `<weights.dir>/<registry file name>` (or `--weights-dir`). `export` converts an official
.pkl snapshot (the same as `python -m pipeline_lib.generator.loading export`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline_lib.settings import CONFIG_FILE, EncoderSettings, load_config


def weights_files(config_path, weights_dir, names) -> dict[str, str]:
    """Registry name -> local path for `names`, as the workflow resolves them; a clear error
    names any missing file and where to get it."""
    from pipeline_lib.weights.registry import REGISTRY, how_to_get

    cfg = load_config(config_path)
    section = cfg.get("weights", {})
    folder = Path(weights_dir or section.get("dir", "resources/weights"))
    out = {}
    for name in names:
        path = Path((section.get("files") or {}).get(name) or folder / REGISTRY[name].filename)
        if not path.is_file():
            raise SystemExit(f"error: missing pretrained file {path}.\n{how_to_get(REGISTRY[name], path)}")
        out[name] = str(path)
    return out


def _encoders(config_path) -> EncoderSettings:
    cfg = load_config(config_path)
    return EncoderSettings.parse({**load_config()["encoders"], **cfg.get("encoders", {})})


def edit(args) -> Path:
    import torch

    from pipeline_lib.devices import resolve_device
    from pipeline_lib.encoders import build_encoder, weights_needed
    from pipeline_lib.generator import load_generator
    from pipeline_lib.images import to_uint8_hwc
    from pipeline_lib.jobs.real_edits import layers_from_text
    from pipeline_lib.latent.projector import ProjectorConfig, project
    from pipeline_lib.latent.real_edits import edit_styles
    from pipeline_lib.latent.sets import check_face_image, to_generator_input
    from pipeline_lib.mref import load_mapper

    attribute_u8 = check_face_image(args.attribute)  # fail on a bad photo before loading anything
    identity_is_seed = args.identity.isdigit()
    identity_u8 = None if identity_is_seed else check_face_image(args.identity)
    device = resolve_device(args.device)
    enc = _encoders(args.encoders_config)
    G = load_generator(args.generator, device=device)
    mapper, meta = load_mapper(args.model, device)
    input_features = meta["settings"]["input_features"]
    kinds = [enc.attribute] + ([enc.identity] if input_features == "identity+attribute" else [])
    files = weights_files(args.encoders_config, args.weights_dir, sorted({n for k in kinds for n in weights_needed(k)}))
    noise = None
    if identity_is_seed:
        z = torch.randn([1, G.z_dim], generator=torch.Generator().manual_seed(int(args.identity))).to(device)
        with torch.no_grad():
            S_id, S_rgb = G.styles(G.mapping(z, truncation_psi=1.0))
            identity_img = G.synthesize(S_id, S_rgb, noise_mode="const").clamp(-1, 1)
    else:
        gaussian = None
        if args.gaussian:
            from pipeline_lib.latent.gaussian import LatentGaussian

            gaussian = LatentGaussian.load(args.gaussian)
        identity_img = to_generator_input(identity_u8[None], G.img_resolution, device)
        config = ProjectorConfig(space=args.space, num_steps=args.steps, loss=args.loss, vgg16_path=args.vgg16)
        print(f"projecting {args.identity} into {args.space.upper()} ({args.steps} steps, {args.loss} loss)...")
        result = project(G, identity_img, config, gaussian=gaussian if args.space != "s" else None, device=device)
        S_id, S_rgb, noise = result.S, result.S_rgb, result.noise
    attribute_img = to_generator_input(attribute_u8[None], G.img_resolution, device)
    with torch.no_grad():
        features = build_encoder(enc.attribute, files, device).embed(attribute_img)
        id_emb = build_encoder(enc.identity, files, device).embed(identity_img) if len(kinds) > 1 else None
    mask = layers_from_text(G, args.layers, device)
    img, _ = edit_styles(G, mapper, input_features, S_id, S_rgb, features, id_emb, mask, noise)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    from pipeline_lib.atomic import atomic_path

    with atomic_path(out) as tmp:
        fmt = "JPEG" if out.suffix.lower() in (".jpg", ".jpeg") else "PNG"
        Image.fromarray(to_uint8_hwc(img)[0].cpu().numpy()).save(tmp, format=fmt)
    print(f"wrote {out}")
    return out


def export(args) -> None:
    from pipeline_lib.generator.loading import main as loading_main

    loading_main(["export", args.snapshot, args.output])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline_lib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("edit", help="edit a face with a trained M_ref")
    e.add_argument("--model", required=True, help="a trained M_ref (results/models/<variant>/mref.pt)")
    e.add_argument("--generator", required=True, help="the generator it was trained with (.pkl or .pt)")
    e.add_argument("--identity", required=True, help="a latent seed (an integer) or an aligned face photo")
    e.add_argument("--attribute", required=True, help="an aligned face photo whose expression and pose to take")
    e.add_argument("--layers", default=None, help="keep dS only on a range of conv layers, e.g. conv0-conv7")
    e.add_argument("--out", required=True, help="the edited face (PNG or JPG)")
    e.add_argument("--encoders-config", default=str(CONFIG_FILE), help="config with `encoders` and `weights`")
    e.add_argument("--weights-dir", default=None, help="folder of the registry's files (overrides weights.dir)")
    e.add_argument("--steps", type=int, default=1000, help="projection steps for a photo identity (NVIDIA: 1000)")
    e.add_argument("--space", choices=("w", "w+", "s"), default="w", help="projection space of a photo identity")
    e.add_argument("--loss", choices=("pixel", "lpips"), default="pixel", help="projection image loss")
    e.add_argument("--vgg16", default=None, help="torchvision VGG16 weights (for --loss lpips)")
    e.add_argument("--gaussian", default=None, help="results/latent/gaussian.h5: project with the W&T prior")
    e.add_argument("--device", default="auto")
    x = sub.add_parser("export", help="convert an official .pkl snapshot to .pt + .json")
    x.add_argument("snapshot")
    x.add_argument("output")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.command == "export":
        export(args)
        return 0
    if args.loss == "lpips" and not args.vgg16:
        print("error: --loss lpips needs --vgg16 (torchvision's vgg16-397923af.pth)", file=sys.stderr)
        return 2
    try:
        edit(args)
    except ValueError as exc:  # unreadable or non-face-sized photos, bad layer ranges
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
