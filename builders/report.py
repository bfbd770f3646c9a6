"""report.html: what a build did to the data, in one self-contained page, plus the key charts as SVG files.

Every package gets one at build time (the `write_report` extra writer), and `dsc report PACKAGE` makes the same bytes
again from the package alone: the page reads only the package's view (`package_view`), never the build's inputs, holds
no absolute path, date or timing, and its charts are deterministic SVG.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from dsc.builders import charts, html
from dsc.builders.charts import COLORS, SPLIT_COLORS, Bar, Panel, Series
from dsc.builders.measures import Measures, TokenMeasures, measure, per_source
from dsc.builders.package_view import PackageView, SideFiles, Split, input_name, read_view
from dsc.builders.side_summary import CLUSTERS, AuditSummary, DuplicateSummary, audit_summary, detail_of, duplicate_summary, plain_reason
from dsc.compiler.pipeline import quantiles

if TYPE_CHECKING:  # the build's types; `dsc report` itself never imports the compiler (nor datasets)
    from dsc.builders.package import Extra
    from dsc.compiler.pipeline import Compiled

REPORT_FILE = "report.html"
CHART_DIR = "report"
CARD_CHARTS = ("funnel", "lengths")
DETAIL_CHARS = 800


@dataclass
class Report:
    """The page and its charts (name -> SVG text); the charts are also written as report/<name>.svg."""

    html: str
    charts: dict[str, str] = field(default_factory=dict)

    def files(self) -> dict[str, str]:
        """Every file the report writes, by path relative to the package."""
        return {REPORT_FILE: self.html, **{f"{CHART_DIR}/{name}.svg": svg for name, svg in self.charts.items()}}


def _anchor(stage: str, reason: str) -> str:
    return f"ex-{stage}-{hashlib.sha1(reason.encode('utf-8')).hexdigest()[:10]}"


@dataclass
class Context:
    """What every section reads: the view, token measures per split, and what it keeps of the audit and duplicates."""

    view: PackageView
    measured: Measures
    audit: AuditSummary
    duplicates: DuplicateSummary | None
    shown: dict[str, dict[str, str]]
    """Prompt and response of every record the page shows, by source id."""

    @property
    def measures(self) -> dict[str, TokenMeasures]:
        """Token measures per split."""
        return self.measured.tokens

    @property
    def examples(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        return self.audit.examples

    @property
    def counts(self) -> dict[str, Any]:
        return self.view.manifest.get("counts", {})

    @property
    def lengths(self) -> dict[str, Any]:
        return self.view.resolved.get("lengths") or {}

    @property
    def conversation(self) -> bool:
        return "conversation" in self.view.resolved

    @property
    def prompt_known(self) -> bool:
        """The masked lead is the prompt unless prompt tokens are trained or turns alternate (a conversation)."""
        return not (self.view.resolved.get("labels") or {}).get("train_on_prompt") and not self.conversation

    def texts(self, ids: list[str]) -> dict[str, dict[str, str]]:
        """The prompt and response of the package's records with these source ids (of those the page shows)."""
        return {sid: self.shown[sid] for sid in ids if sid in self.shown}


def _shown_ids(audit: AuditSummary, duplicates: DuplicateSummary | None) -> set[str]:
    """The records whose text the page shows: every example, the record kept instead of each, the clusters' kept."""
    ids = {str(line.get("source_id")) for lines in audit.examples.values() for line in lines}
    ids |= {str(detail_of(line).get("kept_source_id", "")) for lines in audit.examples.values() for line in lines}
    return ids | ({c.kept for c in duplicates.largest} if duplicates else set())


def _texts(view: PackageView, ids: set[str]) -> dict[str, dict[str, str]]:
    """The prompt and response of the records with these source ids: one walk over the splits' id and text columns."""
    out: dict[str, dict[str, str]] = {}
    wanted = pa.array(sorted(ids), type=pa.string())
    for split in view.splits.values() if ids else ():
        for table in split.slices(["source_id", "prompt", "response"]):
            for row in table.filter(pc.is_in(table.column("source_id"), value_set=wanted)).to_pylist():
                out[row["source_id"]] = row
    return out


def _context(view: PackageView) -> Context:
    """The side files are read here, a batch at a time: the duplicates first, so the audit pass knows whose detail the
    clusters shown need. Then each split is read twice, a slice at a time: once for every measure, once for the text
    of the records shown."""
    duplicates = duplicate_summary(view.side) if view.manifest.get("dedup") else None
    audit = audit_summary(view.side, duplicates.shown_ids() if duplicates else set())
    shown = _texts(view, _shown_ids(audit, duplicates))
    return Context(view=view, measured=measure(view.splits), audit=audit, duplicates=duplicates, shown=shown)


Section = Callable[[Context], tuple[str, dict[str, str]]]


def _funnel_rows(ctx: Context) -> list[tuple[str, str, int]]:
    """(stage, reason, count) from read to kept, in the order records leave the build."""
    c = ctx.counts
    dropped = c.get("dropped", {})
    rows = [("read", "", int(c.get("read", 0)))]
    rows += [("invalid", plain_reason("invalid", r), n) for r, n in sorted(c.get("invalid", {}).items())]
    rows += [("duplicate", plain_reason("duplicate", r), n) for r, n in sorted(dropped.items()) if r.startswith("duplicate: ")]
    rows += [("dropped", plain_reason("dropped", r), n) for r, n in sorted(dropped.items()) if not r.startswith("duplicate: ")]
    rows.append(("truncated", "kept, cut to fit", int(c.get("truncated", 0))))
    rows += [("kept", split, n) for split, n in c.get("kept", {}).items()]
    return rows


def _funnel(ctx: Context) -> tuple[str, dict[str, str]]:
    rows = _funnel_rows(ctx)
    read = rows[0][2] or 1
    bars = [Bar(f"{stage}: {reason}" if reason else stage, n, COLORS[stage]) for stage, reason, n in rows]
    svg = charts.bars(bars, "Records from read to kept")
    cells = []
    for stage, reason, n in rows:
        target = "#truncation" if stage == "truncated" else f"#{_anchor(stage, reason)}"
        linked = stage == "truncated" or (stage, reason) in ctx.examples
        label = f'<a href="{target}">examples</a>' if linked and n else ""
        cells.append((html.text(stage), html.text(reason), n, f"{100 * n / read:.1f}%", label))
    body = [
        '<h2 id="funnel">Funnel</h2>',
        html.image(svg, "funnel: records read, invalid, duplicate, dropped, truncated and kept"),
        html.table(["stage", "reason", "records", "of read", ""], cells, "funnel-table", raw=(0, 1, 4)),
    ]
    return "\n".join(body), {"funnel": svg}


def _limits(ctx: Context) -> dict[str, dict[str, int]]:
    lengths = ctx.lengths
    return {
        key: ({name: int(lengths[name])} if lengths.get(name) else {})
        for key, name in (("prompt", "max_source_length"), ("response", "max_target_length"), ("total", "max_length"))
    }


def _length_panels(ctx: Context) -> list[Panel]:
    limits = _limits(ctx)
    measures = ctx.measures.items()
    colors = dict(zip(ctx.measures, SPLIT_COLORS, strict=False))
    if ctx.prompt_known:
        picks = [("prompt", "prompt tokens", lambda m: m.lead), ("response", "response tokens (with EOS)", lambda m: m.rest)]
    else:
        picks = [("trained", "trained tokens", lambda m: m.trained)]
    picks.append(("total", "total tokens", lambda m: m.total))
    return [Panel(title, [Series(s, pick(m), colors[s]) for s, m in measures], limits.get(key, {})) for key, title, pick in picks]


def _lengths(ctx: Context) -> tuple[str, dict[str, str]]:
    panels = _length_panels(ctx)
    svg = charts.histograms(panels, cols=len(panels))
    rows = []
    for panel in panels:
        limit = next(iter(panel.limits.values()), None)
        for s in panel.series:
            q = quantiles(s.values)
            at_limit = int((s.values == limit).sum()) if limit else None
            rows.append((panel.title, s.name, len(s.values), int(s.values.sum()), q["min"], q["mean"], q["p50"], q["p95"], q["max"], limit,
                         at_limit))
    note = "" if ctx.prompt_known else (
        '<p class="note">Prompt and response sizes are not shown apart: this package trains prompt tokens or alternates '
        "turns, so the labels do not mark where the prompt ends.</p>")
    body = [
        '<h2 id="lengths">Token lengths</h2>',
        html.image(svg, "histograms of token lengths per split with the spec's limits"),
        note,
        html.table(["measure", "split", "records", "tokens", "min", "mean", "p50", "p95", "max", "limit", "at limit"], rows,
                   "lengths-table"),
    ]
    return "\n".join(body), {"lengths": svg}


def _record_text(record: dict[str, str]) -> str:
    return f"prompt:\n{record['prompt']}\n\nresponse:\n{record['response']}"


def _examples_block(ctx: Context, key: tuple[str, str], lines: list[dict[str, Any]]) -> str:
    stage, reason = key
    kept_for = {str(line.get("source_id")): str(detail_of(line).get("kept_source_id", "")) for line in lines}
    shown = ctx.texts([*kept_for, *kept_for.values()])
    rows = []
    for line in lines:
        sid = str(line.get("source_id"))
        where = f"{line.get('file') or sid.rsplit('#', 1)[0]}" + (f":{line['line']}" if line.get("line") else "")
        detail = json.dumps(line.get("detail", {}), ensure_ascii=False, indent=1, sort_keys=True)[:DETAIL_CHARS]
        if record := shown.get(sid):
            text = _record_text(record)
        elif record := shown.get(kept_for[sid]):
            text = f"(not in the package; the record kept instead, {kept_for[sid]}:)\n{_record_text(record)}"
        else:
            text = "(not in the package)"
        rows.append((html.text(line.get("source_id")), html.text(where), html.pre(detail), html.pre(text[:DETAIL_CHARS])))
    total = ctx.audit.counts[key]
    return "\n".join([
        f'<h3 id="{_anchor(stage, reason)}">{html.text(stage)}: {html.text(reason)} ({total:,})</h3>',
        f'<p class="note">{len(lines)} of {total:,} shown.</p>' if total > len(lines) else "",
        html.table(["source_id", "location", "detail", "record in the package"], rows, raw=(0, 1, 2, 3)),
    ])


def _truncation(ctx: Context) -> tuple[str, dict[str, str]]:
    truncated = int(ctx.counts.get("truncated", 0))
    body = ['<h2 id="truncation">Truncation</h2>', f"<p>{truncated:,} kept record(s) were cut to fit the spec's lengths.</p>"]
    if not ctx.audit.present:
        body.append('<p class="note">This package has no audit.jsonl, so lengths before truncation are not known.</p>')
        return "\n".join(body), {}
    before, after = ctx.audit.before, ctx.audit.after
    sides = sorted(set(before.columns) & set(after.columns), key=lambda k: (k == "total", k))
    out: dict[str, str] = {}
    if sides:
        limits = _limits(ctx)
        panels = [
            Panel(f"{side} tokens", [Series("before", before.values(side), COLORS["truncated"]),
                                     Series("after", after.values(side), COLORS["kept"])], limits.get(side, {}))
            for side in sides
        ]
        out["truncation"] = charts.histograms(panels, cols=len(panels))
        body.append(html.image(out["truncation"], "token lengths of truncated records before and after truncation"))
        rows = []
        for side in sides:
            b, a = before.values(side), after.values(side)
            rows.append((side, int((b > a).sum()), int((b - a).sum()), quantiles(b)["p50"], quantiles(a)["p50"], quantiles(b)["max"]))
        headers = ["side", "records cut", "tokens removed", "p50 before", "p50 after", "max before"]
        body.append(html.table(headers, rows, "truncation-table"))
    for key, shown in sorted(ctx.examples.items()):
        if key[0] == "truncated":
            body.append(_examples_block(ctx, key, shown))
    return "\n".join(body), out


def _labels(ctx: Context) -> tuple[str, dict[str, str]]:
    colors = dict(zip(ctx.measures, SPLIT_COLORS, strict=False))
    per_split = [Series(s, m.share, colors[s]) for s, m in ctx.measures.items()]
    share = charts.histograms([Panel("trained share of each record's tokens", per_split, {})], cols=1, xlabel="trained share",
                              fraction=True, bins=20)
    every = list(ctx.measures.values())
    spans = np.concatenate([m.spans for m in every]) if every else np.zeros(0, np.int64)
    masked = np.concatenate([m.masked_spans for m in every]) if every else np.zeros(0, np.int64)
    what = "turns" if ctx.conversation else "spans"
    span_svg = charts.counts(spans, f"trained {what} per record", f"trained {what}", COLORS["kept"])
    masked_svg = charts.counts(masked, f"masked {what} per record", f"masked {what}", COLORS["read"])
    rows = [(s, len(m.total), int(m.trained.sum()), int(m.total.sum()), f"{100 * m.trained.sum() / max(1, m.total.sum()):.1f}%",
             int((m.trained == 0).sum()), int((m.share < 0.05).sum()), quantiles(m.spans)["max"]) for s, m in ctx.measures.items()]
    body = [
        '<h2 id="labels">Trained tokens</h2>',
        '<p class="note">A span is a run of consecutive tokens with the same masking: in a conversation, a trained span is an '
        "assistant turn that is trained and a masked span the turns around it.</p>",
        html.image(share, "distribution of the trained share per record"),
        f'<div class="side">{html.image(span_svg, "trained spans per record")}{html.image(masked_svg, "masked spans per record")}</div>',
        html.table(["split", "records", "trained tokens", "tokens", "trained share", "no trained token", "under 5% trained",
                    f"most trained {what}"], rows, "labels-table"),
    ]
    return "\n".join(body), {"trained_share": share, "spans": span_svg, "masked_spans": masked_svg}


def _duplicates(ctx: Context) -> tuple[str, dict[str, str]]:
    body = ['<h2 id="duplicates">Duplicates</h2>']
    dedup = ctx.view.manifest.get("dedup")
    if not dedup or ctx.duplicates is None:
        body.append('<p class="note">The spec has no dedup: section; nothing was compared.</p>')
        return "\n".join(body), {}
    found = ctx.duplicates
    svg = charts.counts(found.sizes, "duplicate clusters by size", "records in the cluster (kept + dropped)", COLORS["duplicate"])
    settings = {k: dedup[k] for k in ("compare", "keep", "scope") if k in dedup}
    near = dedup.get("near") or {}
    if near:
        settings["near"] = {k: near.get(k) for k in ("shingles", "ngram", "num_perm", "threshold", "bands", "rows")}
    body += [
        f"<p>{found.total:,} record(s) dropped in {len(found.sizes):,} cluster(s): "
        + ", ".join(f"{html.text(r)} {n:,}" for r, n in sorted(found.reasons.items())) + ".</p>",
        html.pre(json.dumps(settings, ensure_ascii=False, sort_keys=True)),
        html.image(svg, "duplicate cluster sizes"),
        f"<h3>The {min(CLUSTERS, len(found.sizes))} largest clusters</h3>",
    ]
    largest = found.largest
    shown = ctx.texts([c.kept for c in largest])
    for cluster in largest:
        kept = shown.get(cluster.kept)
        kept_text = _record_text(kept) if kept else "(not in the package: dropped later)"
        members = []
        for d in cluster.dropped:
            detail = ctx.audit.details.get(str(d["source_id"]))
            extra = "\n" + json.dumps(detail, ensure_ascii=False, sort_keys=True)[:DETAIL_CHARS] if detail else ""
            members.append(f"{d['source_id']} ({d.get('split')}): {d.get('reason')}, similarity {d.get('similarity')}{extra}")
        body.append(f"<h4>kept {html.text(cluster.kept)}, {cluster.size} records</h4>")
        kept_part = f"<div>kept{html.pre(kept_text[:DETAIL_CHARS])}</div>"
        body.append(f'<div class="side">{kept_part}<div>dropped{html.pre(chr(10).join(members))}</div></div>')
    return "\n".join(body), {"clusters": svg}


def _examples(ctx: Context) -> tuple[str, dict[str, str]]:
    body = ['<h2 id="examples">Examples of every reason</h2>']
    if not ctx.audit.present:
        body.append('<p class="note">This package has no audit.jsonl: duplicates are listed from duplicates.jsonl; other reasons are '
                    "counted in the funnel only.</p>")
    for key, lines in sorted(ctx.examples.items()):
        if key[0] != "truncated":
            body.append(_examples_block(ctx, key, lines))
    return "\n".join(body), {}


def _sources(ctx: Context) -> tuple[str, dict[str, str]]:
    inputs = ctx.view.manifest.get("inputs", [])
    table = per_source(inputs, ctx.measured.sources, ctx.audit.left_out, [input_name(i) for i in inputs])
    splits = list(ctx.view.splits)
    stages = sorted({s for row in table for s in row.left_out})
    rows = [(row.name, row.read, *(row.kept.get(s, 0) for s in splits), row.tokens, row.trained, *(row.left_out.get(s, 0) for s in stages))
            for row in table]
    headers = ["source", "read", *(f"kept {s}" for s in splits), "tokens", "trained tokens", *stages]
    return "\n".join(['<h2 id="sources">Sources</h2>', html.table(headers, rows, "sources-table")]), {}


def _text(ctx: Context) -> tuple[str, dict[str, str]]:
    mix = ctx.measured.scripts
    letters = sum(mix["characters"].values()) or 1
    records = sum(mix["records"].values()) or 1
    names = sorted(set(mix["characters"]) | set(mix["records"]))
    rows = [(n, mix["characters"].get(n, 0), f"{100 * mix['characters'].get(n, 0) / letters:.1f}%", mix["records"].get(n, 0),
             f"{100 * mix['records'].get(n, 0) / records:.1f}%") for n in names]
    opened = ctx.measured.openings
    body = [
        '<h2 id="text">Text</h2>',
        "<h3>Scripts</h3>",
        '<p class="note">Letters of the prompt and response text by script; a record counts under the script most of its letters '
        "are in.</p>",
        html.table(["script", "letters", "of letters", "records", "of records"], rows, "scripts-table"),
        "<h3>Most common prompt openings</h3>",
        '<p class="note">The first line of each prompt, cut to 60 characters: how many records each template opening covers.'
        + (f" Counted over a summary (too many distinct openings to list): an opening of {ctx.measured.openings_bound:,} record(s)"
           " or fewer may be missing." if ctx.measured.openings_bound else "") + "</p>",
        html.table(["opening", "records", "of records"], [(o, n, f"{100 * n / records:.1f}%") for o, n in opened], "openings-table"),
    ]
    return "\n".join(body), {}


def _identity(ctx: Context) -> tuple[str, dict[str, str]]:
    m = ctx.view.manifest
    spec = m.get("spec", {})
    tok = m.get("tokenizer", {})
    rows: list[tuple[str, str]] = [
        ("package", str(m.get("name"))),
        ("spec file", Path(str(spec.get("path", ""))).name),
        ("spec sha256", str(spec.get("sha256"))),
        ("tokenizer", str(tok.get("name"))),
        ("tokenizer sha256", str(tok.get("sha256"))),
        ("EOS", f"{tok.get('eos_token')} ({tok.get('eos_id')})"),
        ("vocabulary", str(tok.get("vocab_size"))),
    ]
    for entry in m.get("inputs", []):
        digest = entry.get("sha256") or entry.get("fingerprint")
        rows.append((f"input {input_name(entry)}", f"{entry.get('records')} records, sha256 {digest}"))
    rows += [(f"template {t.get('key')}", f"sha256 {t.get('sha256')}") for t in m.get("templates", [])]
    rows += [(f"version {k}", str(v)) for k, v in sorted(m.get("versions", {}).items())]
    resolved = {k: v for k, v in ctx.view.resolved.items() if k != "output"}
    body = [
        '<h2 id="identity">Build identity</h2>',
        '<p class="note">What made these bytes. No time or date is recorded: two builds of the same inputs give the same report.</p>',
        html.table(["", ""], rows, "identity-table"),
        "<h3>Resolved spec</h3>",
        html.pre(json.dumps(resolved, ensure_ascii=False, indent=1, sort_keys=True)),
    ]
    return "\n".join(body), {}


SECTIONS: tuple[Section, ...] = (_funnel, _lengths, _truncation, _labels, _duplicates, _examples, _sources, _text, _identity)
NAV = (("funnel", "Funnel"), ("lengths", "Lengths"), ("truncation", "Truncation"), ("labels", "Trained tokens"),
       ("duplicates", "Duplicates"), ("examples", "Examples"), ("sources", "Sources"), ("text", "Text"), ("identity", "Identity"))


def make_report(view: PackageView) -> Report:
    """The page and its charts for a package's view."""
    ctx = _context(view)
    m = view.manifest
    kept = ", ".join(f"{split} {n:,}" for split, n in ctx.counts.get("kept", {}).items())
    total = m.get("tokens", {}).get("total", {})
    head = [
        f"<h1>{html.text(view.resolved.get('pretty_name') or m.get('name'))}</h1>",
        f"<p>{html.text(view.resolved.get('description') or '')}</p>",
        f"<p><b>{int(ctx.counts.get('read', 0)):,}</b> records read; kept {html.text(kept)}; {int(total.get('tokens', 0)):,} tokens, "
        f"{100 * float(total.get('trainable_share', 0)):.1f}% trained.</p>",
        "<nav>" + "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in NAV) + "</nav>",
    ]
    parts, svgs = [], {}
    for section in SECTIONS:
        part, drawn = section(ctx)
        parts.append(part)
        svgs.update(drawn)
    return Report(html=html.page(f"dsc report: {m.get('name')}", head + parts), charts=svgs)


def _write_files(folder: Path, report: Report) -> None:
    """Write the report's files; each appears whole (written beside, then renamed over)."""
    (folder / CHART_DIR).mkdir(exist_ok=True)
    for rel, content in report.files().items():
        target = folder / rel
        partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
        partial.write_text(content, encoding="utf-8")
        os.replace(partial, target)


def _card(report: Report) -> str:
    images = "\n".join(f"![{name}]({CHART_DIR}/{name}.svg)" for name in CARD_CHARTS if name in report.charts)
    return (
        "## Report\n\n"
        f"[`{REPORT_FILE}`]({REPORT_FILE}) shows what the build did to the data: the funnel from records read to kept with "
        "examples of every drop, token lengths against the spec's limits, truncation, trained share, duplicate clusters, "
        "sources, scripts and prompt openings (open it from disk; it needs no network).\n\n" + images + "\n"
    )


def write_report(stage: Path, compiled: Compiled) -> Extra:
    """The extra writer: report.html and report/*.svg for the package being staged, the manifest entry and a card section."""
    from dsc.builders.manifest import build_manifest
    from dsc.builders.package import Extra

    manifest = build_manifest(compiled, {}, "")
    splits = {name: Split(rows=spill.rows, slices=spill.slices) for name, spill in compiled.spills.items()}
    view = PackageView(manifest=manifest, splits=splits, side=SideFiles.of(stage, manifest))
    report = make_report(view)
    _write_files(stage, report)
    entry = {"file": REPORT_FILE, "charts": sorted(f"{CHART_DIR}/{name}.svg" for name in report.charts)}
    return Extra(manifest={"report": entry}, card=_card(report))


def regenerate(folder: str | Path) -> Path:
    """Write a package's report again from the package alone (`dsc report`); returns the page's path."""
    folder = Path(folder)
    report = make_report(read_view(folder))
    _write_files(folder, report)
    return folder / REPORT_FILE
