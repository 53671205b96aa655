"""Reading an offline wandb run's log the way wandb writes it, for tests that check what a run logged."""

import struct
import time


def wandb_records(path) -> list:
    """The protobuf records of an offline run's `run-*.wandb` file (wandb's leveldb-style log: a 7-byte file
    header, then 32 KiB blocks of chunks, each with a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32 * 1024
    assert data[:4] == b":W&B", "not a wandb transaction log"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding
            pos += block - pos % block
            continue
        if pos + 7 + length > len(data):  # a chunk still being written
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def finished_run_records(run_dir) -> list:
    """The records of the one offline wandb run in `run_dir`, once its exit record is written: wandb-core writes
    the log from its own process and may still be flushing right after wandb.finish() returned in this one."""
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    path = next(runs[0].glob("run-*.wandb"))
    deadline = time.monotonic() + 30
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return wandb_records(path)
