"""Flickr8k's release files as the caption table cliplab reads (`image`, `split`, `caption`).

Flickr8k (Hodosh, Young & Hockenmaier, "Framing Image Description as a Ranking Task", JAIR 2013) is
8,000 Flickr photos with five captions each, split into 6,000 train, 1,000 dev and 1,000 test photos.
It is for research use only: the photos belong to their Flickr owners. The University of Illinois
distributed it as two archives, which many mirrors keep under the same names:

- `Flickr8k_Dataset.zip`: the photos, in a folder `Flicker8k_Dataset/` (sic);
- `Flickr8k_text.zip`: `Flickr8k.token.txt` (`IMAGE.jpg#N<TAB>caption`) and the split lists
  `Flickr_8k.trainImages.txt`, `Flickr_8k.devImages.txt`, `Flickr_8k.testImages.txt`.

Unpack both, then:

    python examples/flickr8k_table.py --text Flickr8k_text/ --images Flicker8k_Dataset/ --out flickr8k/captions.tsv
    cliplab train --config examples/flickr8k.yaml data=flickr8k/captions.tsv

Photos named in a split list but missing from the images folder are left out and counted.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

SPLITS = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt", "test": "Flickr_8k.testImages.txt"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", required=True, type=Path, help="the unpacked Flickr8k_text folder")
    parser.add_argument("--images", required=True, type=Path, help="the unpacked folder of photos (Flicker8k_Dataset)")
    parser.add_argument("--out", required=True, type=Path, help="the table to write, e.g. flickr8k/captions.tsv")
    args = parser.parse_args(argv)

    needed = [args.text / "Flickr8k.token.txt", *(args.text / name for name in SPLITS.values())]
    if missing := [str(path) for path in needed if not path.is_file()]:
        print(f"flickr8k_table: error: missing {', '.join(missing)} (unpack Flickr8k_text.zip there)", file=sys.stderr)
        return 2
    if not args.images.is_dir():
        print(f"flickr8k_table: error: {args.images} is not a folder of photos", file=sys.stderr)
        return 2
    split_of = {}
    for split, name in SPLITS.items():
        for line in (args.text / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                split_of[line.strip()] = split
    captions: dict[str, list[str]] = {}
    for line in (args.text / "Flickr8k.token.txt").read_text(encoding="utf-8").splitlines():
        key, _, caption = line.partition("\t")
        image = key.partition("#")[0].strip()
        if image and caption.strip():
            captions.setdefault(image, []).append(caption.strip())

    args.out.parent.mkdir(parents=True, exist_ok=True)
    written, missing_photos = 0, 0
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        table = csv.writer(f, delimiter="\t", lineterminator="\n")
        table.writerow(["image", "split", "caption"])
        for image, split in split_of.items():
            photo = args.images / image
            if not photo.is_file() or image not in captions:
                missing_photos += 1
                continue
            relative = os.path.relpath(photo.resolve(), args.out.parent.resolve())
            table.writerows([relative, split, caption] for caption in captions[image])
            written += 1
    print(f"wrote {args.out}: {written} photos ({missing_photos} named in the split lists but missing, left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
