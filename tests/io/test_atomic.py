"""certssb.io.atomic: the durable dataset wrappers round-trip, leave no temporary file, and an interrupted
write leaves the old file."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from matplotlib.figure import Figure

from certssb.io.atomic import AtomicFile, CSVDataset, JSONDataset, MatplotlibDataset


def test_atomic_datasets_round_trip_and_leave_no_temporary_file(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    csv = CSVDataset(filepath=str(tmp_path / "t" / "table.csv"), save_args={"index": False})
    csv.save(df)
    pd.testing.assert_frame_equal(csv.load(), df)
    js = JSONDataset(filepath=str(tmp_path / "d.json"))
    js.save({"k": [1, 2]})
    assert js.load() == {"k": [1, 2]}
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    png = MatplotlibDataset(filepath=str(tmp_path / "f.png"))
    png.save(fig)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_an_interrupted_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text(json.dumps({"old": True}))
    with pytest.raises(RuntimeError), AtomicFile(target, "w") as fh:
        fh.write('{"new": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_the_target_appears_only_on_close_and_its_folder_is_synced(tmp_path, monkeypatch):
    from certssb.io import atomic

    synced = []
    monkeypatch.setattr(atomic, "fsync_dir", synced.append)
    target = tmp_path / "new" / "table.csv"  # the folder is created
    fh = AtomicFile(target, "w")
    fh.write("a,b\n")
    tmp = list(target.parent.iterdir())
    assert not target.exists() and len(tmp) == 1 and tmp[0].name.startswith(".table.csv.")
    fh.close()
    fh.close()  # a second close is a no-op
    assert target.read_text() == "a,b\n" and list(target.parent.iterdir()) == [target]
    assert synced == [target.parent]
    fh.discard()  # after close: nothing to discard, the file stays
    assert target.exists()
