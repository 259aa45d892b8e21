"""WebDataset shards: written from a table, read back sample for sample, cut-off shards detected."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from cliplab.cli import main
from cliplab.data import open_source
from cliplab.data.shards import list_shards, read_shard, sample_captions, sample_image_bytes, shard_sizes
from cliplab.errors import SourceError

from .conftest import write_caption_table


def test_cli_writes_shards_that_read_back_byte_for_byte(tmp_path, capsys):
    table = write_caption_table(tmp_path / "data", 7, size=24)
    assert main(["shards", str(table), str(tmp_path / "shards"), "--samples-per-shard", "3"]) == 0
    assert "wrote 7 samples in 3 shards" in capsys.readouterr().out
    shards = list_shards(tmp_path / "shards")
    assert [s.rsplit("/", 1)[-1] for s in shards] == ["00000.tar", "00001.tar", "00002.tar"]
    assert shard_sizes(shards) == dict(zip(shards, [3, 3, 1]))
    samples = [sample for shard in shards for sample in read_shard(shard)[0]]
    entries = open_source(table).items
    assert len(samples) == len(entries)
    for (_, files), entry in zip(samples, entries):
        assert sample_image_bytes(files) == Path(entry.path).read_bytes()
        assert sample_captions(files) == list(entry.captions)  # every caption, not only the first
        assert files["txt"].decode() == entry.captions[0]


def test_img2dataset_style_shards_with_txt_only(tmp_path):
    path = tmp_path / "00000.tar"
    with tarfile.open(path, "w") as tar:
        for name, payload in (("a/001.jpg", b"\xff\xd8jpeg"), ("a/001.txt", b"a cat"), ("a/002.jpg", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    samples, problem = read_shard(str(path))
    assert problem is None and [key for key, _ in samples] == ["a/001", "a/002"]
    assert sample_captions(samples[0][1]) == [b"a cat"]
    assert shard_sizes([str(path)]) is None  # no sizes.json: the trainer asks for samples_per_epoch


@pytest.mark.parametrize(
    "cut_at",
    [
        lambda tar: tar.index(b"000000002.jpg") + 900,  # inside an image
        lambda tar: tar.index(b"000000003.txt"),  # exactly at a member boundary: tarfile sees a clean end
        lambda tar: tar.index(b"000000004.json") + 512 + 10,  # inside the very last file
    ],
)
def test_cut_off_shards_keep_their_complete_samples(tmp_path, cut_at):
    table = write_caption_table(tmp_path / "data", 5, size=24)
    main(["shards", str(table), str(tmp_path / "shards")])
    whole = (tmp_path / "shards" / "00000.tar").read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[: cut_at(whole)])
    samples, problem = read_shard(str(cut))
    assert problem == "shard cut off"
    complete, _ = read_shard(str(tmp_path / "shards" / "00000.tar"))
    assert samples == complete[: len(samples)] and len(samples) < len(complete)
    assert all(set(files) == {"jpg", "txt", "json"} for _, files in samples)


def test_list_shards_patterns_and_errors(tmp_path):
    assert list_shards(str(tmp_path / "{008..011}.tar")) == [str(tmp_path / f"{i:03d}.tar") for i in range(8, 12)]
    with pytest.raises(SourceError, match="no .tar shards"):
        list_shards(tmp_path)
    with pytest.raises(SourceError, match="numeric ranges"):
        list_shards(str(tmp_path / "{a..b}.tar"))
