"""Export the image tower of an open_clip model (BioCLIP 2, CLIP) to ONNX once, for
`hitl embed --model onnx:OUT.onnx`, with its preprocessing in OUT.json beside it.

    pip install open_clip_torch torch onnx        # in any environment; hitl itself needs neither
    python scripts/export_onnx.py hf-hub:imageomics/bioclip-2 models/bioclip-2.onnx
    python scripts/export_onnx.py ViT-L-14/openai models/clip-vit-l-14.onnx

The weights are fetched by open_clip (from the Hugging Face hub): this needs the network once.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def fail(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="hf-hub:<repo> or <architecture>/<pretrained tag>, e.g. ViT-L-14/openai")
    parser.add_argument("out", help="the .onnx file to write (its .json is written beside it)")
    args = parser.parse_args()
    try:
        import open_clip
        import torch
    except ImportError:
        return fail("open_clip and torch are needed for the export: pip install open_clip_torch torch onnx")
    name, _, tag = args.model.partition("/") if not args.model.startswith("hf-hub:") else (args.model, "", None)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=tag or None)
    except Exception as exc:  # no network, an unknown name: one line
        return fail(f"cannot load {args.model} ({str(exc).splitlines()[0][:200]}); check the name and the network")
    model.eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(model.visual, torch.zeros(1, 3, size, size), str(out), input_names=["image"],
                          output_names=["embedding"], dynamic_axes={"image": {0: "n"}, "embedding": {0: "n"}},
                          opset_version=17)
    normalise = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
    spec = {"name": out.stem, "source": args.model, "input_size": int(size),
            "mean": [float(x) for x in normalise.mean], "std": [float(x) for x in normalise.std]}
    out.with_suffix(".json").write_text(json.dumps(spec, indent=2) + "\n")
    print(f"Wrote {out} and {out.with_suffix('.json')} (input {size} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
