"""Write `src/cliplab/pretrained/registry.json`: the released weights cliplab loads by name.

Read from OpenCLIP itself (its pretrained tags, model configurations and preprocessing, from the
installed `open_clip_torch`) and from OpenCLIP's results table (`docs/openclip_results.csv` of a
checkout of github.com/mlfoundations/open_clip: the zero-shot ImageNet top-1 its authors report).
Only architectures cliplab builds are written. OpenAI's nine releases come from OpenAI's own URLs,
whose path holds each file's SHA-256 (as openai/CLIP's clip/clip.py lists them).

    python tools/pretrained_registry.py path/to/open_clip/docs/openclip_results.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

OPENAI_RELEASES = {  # architecture: (file, SHA-256), as openai/CLIP's clip/clip.py lists them
    "RN50": ("RN50.pt", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"),
    "RN101": ("RN101.pt", "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599"),
    "RN50x4": ("RN50x4.pt", "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd"),
    "RN50x16": ("RN50x16.pt", "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa"),
    "RN50x64": ("RN50x64.pt", "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c"),
    "ViT-B-32": ("ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"),
    "ViT-B-16": ("ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"),
    "ViT-L-14": ("ViT-L-14.pt", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836"),
    "ViT-L-14-336": ("ViT-L-14-336px.pt", "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"),
}


def licence(tag: str, repo: str) -> str:
    if tag == "openai":
        return "MIT (openai/CLIP)"
    if "metaclip" in tag:
        return "CC-BY-NC-4.0"
    if repo.startswith("apple/"):
        return "Apple Sample Code License"
    return "MIT"  # OpenCLIP's own releases: LAION-400M/2B, DataComp, CommonPool, YFCC-15M, CC12M


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_csv", help="OpenCLIP's docs/openclip_results.csv")
    args = parser.parse_args()
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained

    from cliplab.checkpoints.openclip import from_open_clip_config, preprocess_options
    from cliplab.errors import CheckpointError
    from cliplab.transforms import OPENAI_MEAN, OPENAI_STD

    with open(args.results_csv, newline="") as f:
        top1 = {(row["name"], row["pretrained"]): float(row["ImageNet 1k"]) for row in csv.DictReader(f)}
    architectures: dict[str, dict] = {}
    entries: dict[tuple[str, str], dict] = {}
    skipped: set[str] = set()
    for name, tag in list_pretrained():
        architecture = name.removesuffix("-quickgelu")
        cfg = get_pretrained_cfg(name, tag)
        model_cfg = open_clip.get_model_config(architecture)
        try:
            config = from_open_clip_config(model_cfg)
            preprocess = preprocess_options(cfg)
        except (CheckpointError, TypeError):
            skipped.add(architecture)
            continue
        quick_gelu = bool(cfg.get("quick_gelu", False) or name.endswith("-quickgelu"))
        if (architecture, tag) in entries:
            continue  # listed under both names: one entry, the weights' activation
        shape = config.to_dict()
        for key in ("activation", "image_mean", "image_std", "image_resize", "logit_bias"):
            shape.pop(key)
        architectures[architecture] = shape
        entry = {"architecture": architecture, "tag": tag, "activation": "quick_gelu" if quick_gelu else "gelu"}
        if tag == "openai" and architecture in OPENAI_RELEASES:
            file, sha256 = OPENAI_RELEASES[architecture]
            entry |= {"source": "openai", "file": file, "sha256": sha256}
        elif cfg.get("hf_hub"):
            repo_id, file = os.path.split(cfg["hf_hub"])  # "org/name/" or "org/name/file", as OpenCLIP reads it
            entry |= {"source": "hf-hub", "repo": repo_id, "file": file or "open_clip_pytorch_model.bin"}
        else:
            skipped.add(f"{architecture}:{tag} (no Hub repository)")
            continue
        for key, default in (("image_mean", OPENAI_MEAN), ("image_std", OPENAI_STD), ("image_resize", "shortest")):
            if key in preprocess and preprocess[key] != default:
                entry[key] = list(preprocess[key]) if key != "image_resize" else preprocess[key]
        entry["licence"] = licence(tag, entry.get("repo", ""))
        reported = top1.get(
            (f"{architecture}-quickgelu" if quick_gelu else architecture, tag), top1.get((architecture, tag))
        )
        if reported is not None:
            entry["imagenet_top1"] = reported
        entries[(architecture, tag)] = entry
    registry = {
        "about": "Released CLIP weights cliplab loads by name. Written by tools/pretrained_registry.py from "
        f"open_clip_torch {open_clip.__version__} (tags, configurations, preprocessing) and OpenCLIP's "
        "docs/openclip_results.csv (zero-shot ImageNet top-1 as its authors report it); OpenAI's files and "
        "SHA-256 from openai/CLIP's clip/clip.py.",
        "architectures": dict(sorted(architectures.items())),
        "pretrained": sorted(entries.values(), key=lambda e: (e["architecture"], e["tag"] != "openai", e["tag"])),
    }
    out = ROOT / "src" / "cliplab" / "pretrained" / "registry.json"
    out.write_text(json.dumps(registry, indent=1) + "\n")
    print(f"wrote {out}: {len(entries)} pretrained weights of {len(architectures)} architectures")
    print("not built by cliplab (skipped):", ", ".join(sorted(skipped)))


if __name__ == "__main__":
    main()
