#!/usr/bin/env python3
"""What `tracecraft redact` and `tracecraft import` do, done with the Python reference
(tracecraft 0.2.1), whole-process, for `cargo xtask bench cli`.

  cli_reference.py redact < in.txt > out.txt
      stdin text -> RedactionProcessor().redact_text (default rules, MASK) -> stdout
  cli_reference.py import runs.jsonl > out.jsonl
      each line -> AgentRun -> the runtime's SAFETY pipeline (enrichment -> redaction ->
      sampling, built as ../shared/bench/redact_reference.py --pipeline builds it) -> one
      JSON line on stdout (a run the pipeline drops is not written)
  cli_reference.py import runs.jsonl --store sqlite:PATH
      the same pipeline, each kept run saved to SQLiteTraceStore(PATH) (its defaults)

Exit status 2 on bad usage.
"""

from __future__ import annotations

import sys


def redact() -> int:
    from tracecraft.processors.redaction import RedactionProcessor

    proc = RedactionProcessor()
    text = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    sys.stdout.buffer.write(proc.redact_text(text).encode("utf-8", errors="surrogatepass"))
    return 0


def pipeline():
    from tracecraft.core.config import ProcessorOrder, TraceCraftConfig
    from tracecraft.core.runtime import TALRuntime

    cfg = TraceCraftConfig(processor_order=ProcessorOrder.SAFETY)
    rt = TALRuntime(console=False, jsonl=False, config=cfg)
    return rt._processors


def import_runs(path: str, store_url: str | None) -> int:
    from tracecraft.core.models import AgentRun

    procs = pipeline()
    store = None
    if store_url is not None:
        if not store_url.startswith("sqlite:"):
            print("cli_reference: only --store sqlite:PATH is supported", file=sys.stderr)
            return 2
        from tracecraft.storage.sqlite import SQLiteTraceStore

        store = SQLiteTraceStore(store_url[len("sqlite:"):])
    out = sys.stdout
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            run = AgentRun.model_validate_json(line)
            for p in procs:
                run = p.process(run)
                if run is None:
                    break
            if run is None:
                continue
            if store is not None:
                store.save(run)
            else:
                out.write(run.model_dump_json())
                out.write("\n")
    if store is not None:
        store.close()
    out.flush()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["redact"] and len(argv) == 1:
        return redact()
    if argv[:1] == ["import"] and len(argv) == 2:
        return import_runs(argv[1], None)
    if argv[:1] == ["import"] and len(argv) == 4 and argv[2] == "--store":
        return import_runs(argv[1], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
