"""`icpd export` and `icpd cache-support`."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    from icpd.commands.common import PRESET_HELP, fail, out, preset_callback

    @app.command("export")
    def export_cmd(
        out_dir: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
        checkpoint: Path | None = typer.Option(None, help="ICPD-Net checkpoint (.pt or .safetensors)."),
        preset: str | None = typer.Option(None, callback=preset_callback, help=PRESET_HELP),
        random_weights: bool = typer.Option(False, help="No checkpoint: seeded random weights (latency only)."),
        rank_prior: str = typer.Option("onnx", help="onnx: standard ops (any runtime); plugin: one NdcgPrior node per use (TensorRT plugin)."),
        precision: str = typer.Option("fp32", help="fp32, or fp16 (FP16 graphs with FP32 islands, for TensorRT 11 strong typing)."),
        validate: bool = typer.Option(True, help="Check ONNX Runtime against PyTorch before finishing."),
        force: bool = typer.Option(False, help="Replace an existing, non-empty --out."),
    ) -> None:
        """Export a trained ICPD-Net: preprocess/encoder/matcher ONNX + weights + model.json, self-checked."""
        import shutil
        import tempfile

        from icpd.export.onnx import ExportError, export_model
        from icpd.model.checkpoint import load_checkpoint, seeded_model

        if (checkpoint is None) == (not random_weights):
            fail(ValueError("give --checkpoint C, or --random-weights --preset P for a latency-only model"))
        if precision not in ("fp32", "fp16"):
            fail(ValueError(f"--precision {precision!r}: choose fp32 or fp16"))
        try:
            if checkpoint is not None:
                model, source = load_checkpoint(checkpoint, preset=preset), checkpoint.name
            else:
                model, source = seeded_model(preset or "paper", seed=0), "random weights: latency only"
            if precision == "fp32":
                res = export_model(model, out_dir, rank_prior=rank_prior, validate=validate, force=force, source=source)
            else:
                from icpd.export.fp16 import Fp16ConversionError, convert_model_dir_fp16
                from icpd.trt.validate import check_fp16_against_fp32

                out_dir.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.fp32.", dir=out_dir.parent))
                try:
                    res = export_model(model, tmp / "m", rank_prior=rank_prior, validate=validate, source=source)
                    convert_model_dir_fp16(res.path, out_dir, check=check_fp16_against_fp32 if validate else None, force=force)
                    res.path = out_dir
                except Fp16ConversionError as e:
                    raise ExportError(str(e)) from e
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        except (ValueError, ExportError) as e:
            fail(e)
        worst = res.validation.get("outputs", {}).get("logits", {}).get("max_abs")
        check = f"; logits max |ORT - torch| = {worst:.2e}" if worst is not None else ""
        out.print(f"wrote {res.path} in {res.seconds:.1f} s{check}")

    @app.command("cache-support")
    def cache_support_cmd(
        model: Path = typer.Option(..., help="Model directory from `icpd export`."),
        class_name: str = typer.Option(..., help="Name of the class (label in outputs)."),
        images: list[Path] = typer.Option(..., "--image", "--images", help="Support image; repeat for K shots."),
        masks: list[Path] = typer.Option(..., "--mask", "--masks", help="Its mask (0/1 or 0/255); one per --image, same order."),
        class_embeddings: Path = typer.Option(..., help="Class embeddings (.safetensors from `icpd embed-text`)."),
        target_class: str | None = typer.Option(None, help="Row of the class in the embeddings (default: --class-name)."),
        out_path: Path = typer.Option(..., "--out", "-o", help="Support cache file to write (e.g. ship.support)."),
        backend: str = typer.Option("ort", help="Backend that encodes the supports: ort or torch."),
        device: str = typer.Option("cpu", help="cpu or cuda[:N]."),
    ) -> None:
        """Encode a class's support images once and cache what the matcher needs."""
        from icpd.export.model_dir import ModelDirError
        from icpd.io import read_image, read_mask
        from icpd.model.text import load_class_embeddings
        from icpd.runtime.predictor import Predictor

        if len(images) != len(masks):
            fail(ValueError(f"--image/--mask: {len(images)} images but {len(masks)} masks; give one mask per image"))
        try:
            predictor = Predictor.load(model, backend=backend, device=device)
            emb = load_class_embeddings(class_embeddings, preset=predictor.preset).for_target(target_class or class_name)
            rasters = [read_image(p) for p in images]
            mask_arrays = [read_mask(m, like=r) for m, r in zip(masks, rasters)]
            support = predictor.encode_support([r.pixels for r in rasters], mask_arrays, class_name, emb.numpy())
            support.meta.update({"images": [p.name for p in images], "masks": [m.name for m in masks]})
            support.save(out_path)
        except (ValueError, ModelDirError) as e:
            fail(e)
        out.print(f"wrote {out_path}: class {class_name!r}, {support.shots} shot(s)")
