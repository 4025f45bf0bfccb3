"""`sadh-cli bench`: encoder latency (batch 1) and throughput (batch 32), index search time per query (flat and MIH); JSON out."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..sdk.benchmark import SYNTHETIC_DB, THROUGHPUT_BATCH
from .options import MODEL_OPTION, check_outputs

MAX_FRAME_SIDE = 8192  # 8K cameras are 7680 x 4320; a batch of such frames is already 3 GB


def register(app: typer.Typer) -> None:
    """Add the `bench` command to the app."""

    @app.command("bench")
    def bench(
        model: Path = MODEL_OPTION,
        index: Optional[Path] = typer.Option(None, "--index", "-i", help="Index to time searches on (default: random codes)."),
        db_size: int = typer.Option(SYNTHETIC_DB, min=1, help="Size of the random index when --index is not given."),
        frame: str = typer.Option("640x480", help="Camera frame size WxH fed to the encoder (preprocessing included)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON file (default: <model>.bench.json beside the model)."),
    ) -> None:
        """Time the encoder (batch 1 latency, batch 32 throughput) and the index search, flat and MIH; write a JSON report.

        MIH pays off on trained (clustered) codes; on the default random codes it mostly takes the flat scan, so time it with --index.
        """
        import json

        from ..sdk.atomic import atomic_write_text
        from ..sdk.benchmark import benchmark
        from ..sdk.encoder import Encoder
        from ..sdk.errors import SadhError

        try:
            w, h = (int(v) for v in frame.lower().split("x"))
        except ValueError:
            raise SadhError(f"bad --frame {frame!r}: use WxH, e.g. 640x480") from None
        if not (1 <= w <= MAX_FRAME_SIDE and 1 <= h <= MAX_FRAME_SIDE):
            raise SadhError(f"bad --frame {frame!r}: each side must be 1 to {MAX_FRAME_SIDE} pixels (a camera frame)")
        out = out or model.with_suffix(".bench.json")
        check_outputs({"--out": out}, [("--model", model), ("--index", index)])
        encoder = Encoder(model, max_batch=THROUGHPUT_BATCH)
        result = benchmark(encoder, (h, w), index, db_size)
        atomic_write_text(out, json.dumps(result, indent=1))
        e, s, m = result["encoder"], result["search"], result["search_mih"]
        typer.echo(
            f"encoder ({encoder.precision}, {', '.join(encoder.providers)}): {e['latency_ms_median']:.2f} ms/frame at batch 1, "
            f"{e['throughput_images_per_s']:.0f} images/s at batch {THROUGHPUT_BATCH}; search over {s['codes']} codes: "
            f"{s['single_query_us']:.0f} us (1 query), {s['batched_us_per_query']:.1f} us/query batched; with MIH (--mih): "
            f"{m['single_query_us']:.0f} us, {m['batched_us_per_query']:.1f} us/query after {m['tables_s']:.2f} s building its tables"
        )
        typer.echo(f"wrote {out}")
