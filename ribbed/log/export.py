"""Exporting a log's messages to parquet, CSV or JSON lines, a block of ticks at a time (a
large log is never held in memory whole)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ribbed.errors import Problem, RibbedError
from ribbed.log.messages import iter_messages, to_frame
from ribbed.scheduler.messages import Kind, Stage

__all__ = ["FORMATS", "export"]

FORMATS = ("parquet", "csv", "jsonl")


def export(log, out: str | Path, format: str, **filters) -> int:
    """Write the messages of ``log`` (filtered as :func:`~ribbed.log.messages.iter_messages`) to
    ``out``; the number of messages written."""
    out = Path(out)
    if format not in FORMATS:
        raise RibbedError(Problem(str(out), "--format", f"unknown format '{format}'", "use parquet, csv or jsonl"))
    if out.exists():
        raise RibbedError(Problem(str(out), "", "already exists", "choose a new file for --out"))
    count, writer = 0, None
    try:
        with open(out, "wb") as stream:
            for block in iter_messages(log, **filters):
                if not len(block) and count:
                    continue
                count += len(block)
                if format == "parquet":
                    import pyarrow as pa
                    import pyarrow.parquet as pq

                    table = pa.Table.from_pandas(to_frame(block), preserve_index=False)
                    writer = writer or pq.ParquetWriter(stream, table.schema)
                    writer.write_table(table)
                elif format == "csv":
                    to_frame(block).to_csv(stream, header=writer is None, index=False)
                    writer = True
                else:
                    stream.write(_json_lines(block).encode("utf-8"))
            if writer not in (None, True):
                writer.close()
    except OSError as exc:
        raise RibbedError(Problem(str(out), "", f"cannot write the export: {exc.strerror or exc}",
                                  "choose a folder this process can write to")) from None
    return count


def _json_lines(block) -> str:
    stages = [s.name.lower() for s in Stage]
    kinds = [k.name.lower() for k in Kind]
    lines = []
    for tick, step, stage, kind, src, dst, payload in zip(block["tick"].tolist(), block["step"].tolist(),
                                                          block["stage"].tolist(), block["kind"].tolist(),
                                                          block["src"].tolist(), block["dst"].tolist(),
                                                          np.asarray(block["payload"]).tolist()):
        lines.append(json.dumps({"tick": tick, "step": step, "stage": stages[stage], "kind": kinds[kind], "src": src,
                                 "dst": dst, "payload": payload}, allow_nan=True))
    return "".join(line + "\n" for line in lines)
