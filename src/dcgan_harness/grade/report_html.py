"""grades/index.html: the class on one page that opens from the folder, offline.

The class table (sorted by clicking a column, or by `#sort=score`,
`#sort=-score` in the address; filtered by a failed check, or by
`#filter=<check>`), a histogram of the scores and each check's pass rate
as inline SVG, the most similar pairs of playbooks, and each student's
feedback with links to their log.txt, configure.yaml and fetched files.

Everything a student wrote is escaped; the page's Content-Security-Policy
lets only its own script and style run (by their hashes), so a task name
holding HTML stays text even where escaping was forgotten.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import statistics
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from .formats import printable, write_atomically
from .results import ERROR, FAILED, PARTIAL, PASSED, SubmissionResult, format_points
from .rubric import Rubric
from .similarity import NEAR_IDENTICAL, Pair

FILENAME = "index.html"
TOP_PAIRS = 10
MAX_LINKED_FILES = 50
BINS = 10
FINDING = re.compile(r"^\s*configure\.yaml:(\d+)(?::\d+)?:\s*(.*)$")
OUTCOME_CLASS = {PASSED: "passed", PARTIAL: "partial", FAILED: "failed", ERROR: "error"}

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#1d2430}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}h3{font-size:15px;margin:16px 0 6px}
.summary{color:#4a5565;margin:0 0 16px}
.charts{display:flex;gap:24px;flex-wrap:wrap}.charts figure{margin:0;flex:1 1 520px}
figcaption{font-weight:600;margin-bottom:4px}
svg text{font:12px system-ui,sans-serif;fill:#1d2430}
.bar{fill:#3b7dd8}.rate{fill:#2e9e5b}.track{fill:#e8ebf0}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{border-bottom:1px solid #dde2ea;padding:4px 8px;text-align:left;vertical-align:top}
th button{font:inherit;font-weight:600;border:0;background:none;padding:0;cursor:pointer;color:#1d2430}
th[aria-sort=ascending] button::after{content:" \\25B2"}th[aria-sort=descending] button::after{content:" \\25BC"}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.passed{color:#1d7a45}.failed{color:#b3261e}.partial{color:#9a6700}.error{color:#6e40c9}
.leak{color:#fff;background:#b3261e;border-radius:3px;padding:0 5px}
.controls{margin:8px 0}select{font:inherit;max-width:360px}
article{border-top:2px solid #dde2ea;margin-top:20px}
pre{white-space:pre-wrap;word-break:break-word;margin:2px 0;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
.links a{margin-right:12px}.muted{color:#6b7585}
ul.findings{margin:4px 0;padding-left:18px}.line{font-variant-numeric:tabular-nums;font-weight:600}
"""

SCRIPT = """
(function () {
  var table = document.getElementById("grades");
  var body = table.tBodies[0];
  var filter = document.getElementById("filter");
  function value(row, key, type) {
    var raw = row.getAttribute("data-" + key) || "";
    return type === "number" ? parseFloat(raw) || 0 : raw.toLowerCase();
  }
  function sortBy(key, descending) {
    var header = table.querySelector('th[data-key="' + key + '"]');
    if (!header) return;
    var type = header.getAttribute("data-type");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, key, type), y = value(b, key, type);
      var order = x < y ? -1 : x > y ? 1 : 0;
      if (descending) order = -order;
      // Equal values keep the names' order whichever way the column is sorted.
      if (order === 0) order = value(a, "name", "text") < value(b, "name", "text") ? -1 : 1;
      return order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    table.querySelectorAll("th[data-key]").forEach(function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.setAttribute("data-sorted", (descending ? "-" : "") + key);
  }
  function filterBy(check) {
    Array.prototype.forEach.call(body.rows, function (row) {
      var failed = (row.getAttribute("data-failed") || "").split(" ");
      row.hidden = !!check && failed.indexOf(check) < 0;
    });
    filter.value = check || "";
    table.setAttribute("data-filter", check || "");
  }
  function fromAddress() {
    var options = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      var pair = part.split("=");
      if (pair.length === 2) options[decodeURIComponent(pair[0])] = decodeURIComponent(pair[1]);
    });
    if (options.sort) sortBy(options.sort.replace(/^-/, ""), options.sort.charAt(0) === "-");
    filterBy(options.filter || "");
  }
  table.querySelectorAll("th[data-key] button").forEach(function (button) {
    button.addEventListener("click", function () {
      var th = button.parentNode;
      var key = th.getAttribute("data-key");
      var descending = th.getAttribute("aria-sort") === "ascending" ||
        (!th.getAttribute("aria-sort") && th.getAttribute("data-type") === "number");
      sortBy(key, descending);
    });
  });
  filter.addEventListener("change", function () { filterBy(filter.value); });
  window.addEventListener("hashchange", fromAddress);
  fromAddress();
})();
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def esc(text) -> str:
    return html.escape(printable(str(text)), quote=True)


def href(*parts: str) -> str:
    return quote("/".join(parts))


def render(results: list[SubmissionResult], rubric: Rubric, out_dir: Path, pairs: list[Pair] = (), now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    checks = [(rule.id, rule.name) for rule in rubric.checks]
    total = max((r.max_score for r in results), default=0) or sum(rule.points for rule in rubric.checks)
    scores = [r.score for r in results]
    summary = f"{len(results)} submission(s), graded {now.isoformat(timespec='minutes')}"
    if scores:
        summary += (f"; mean {format_points(round(statistics.mean(scores), 1))}, median "
                    f"{format_points(round(statistics.median(scores), 1))} of {format_points(total)}")  # fmt: skip
    csp = f"default-src 'none'; style-src {_hash(STYLE)}; script-src {_hash(SCRIPT)}; img-src data:"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Grades: {len(results)} submission(s)</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<header><h1>Class report</h1><p class=\"summary\">{esc(summary)}</p></header>",
        '<section class="charts">',
        f"<figure><figcaption>Scores</figcaption>{histogram(scores, total)}</figure>",
        f"<figure><figcaption>Pass rate per check</figcaption>{pass_rates(results, checks)}</figure>",
        "</section>",
        class_table(results, checks),
        similar_pairs(pairs),
        '<section id="students"><h2>Feedback</h2>',
        *[student(result, out_dir) for result in results],
        "</section>",
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write(results: list[SubmissionResult], rubric: Rubric, out_dir: Path, pairs: list[Pair] = ()) -> Path:
    path = out_dir / FILENAME
    write_atomically(path, render(results, rubric, out_dir, pairs))
    return path


# --- Charts --------------------------------------------------------------------------


def histogram(scores: list[float], total: float) -> str:
    width, height, left, bottom, top = 520, 220, 36, 30, 12
    counts = [0] * BINS
    for value in scores:
        counts[min(BINS - 1, int(BINS * max(0.0, value) / total)) if total else 0] += 1
    tallest = max(counts) or 1
    plot_w, plot_h = width - left - 8, height - bottom - top
    bar_w = plot_w / BINS
    items = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="histogram of scores" id="histogram">']  # fmt: skip
    items.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#8a93a3"/>')
    for tick in range(tallest + 1) if tallest <= 8 else range(0, tallest + 1, max(1, tallest // 4)):
        y = top + plot_h - plot_h * tick / tallest
        items.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for index, count in enumerate(counts):
        x = left + index * bar_w
        bar_h = plot_h * count / tallest
        low, high = total * index / BINS, total * (index + 1) / BINS
        label = f"{format_points(round(low, 1))}-{format_points(round(high, 1))}: {count}"
        items.append(f'<rect class="bar" x="{x + 2:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar_w - 4:.1f}" height="{bar_h:.1f}">'
                     f"<title>{esc(label)}</title></rect>")  # fmt: skip
        if count:
            items.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - bar_h - 3:.1f}" text-anchor="middle">{count}</text>')
        if index % 2 == 0:
            items.append(f'<text x="{x:.1f}" y="{height - 12}" text-anchor="middle">{format_points(round(low, 1))}</text>')
    items.append(f'<text x="{left + plot_w:.1f}" y="{height - 12}" text-anchor="end">{format_points(total)}</text>')
    items.append("</svg>")
    return "".join(items)


def pass_rates(results: list[SubmissionResult], checks: list[tuple[str, str]]) -> str:
    row_h, label_w, bar_w = 24, 150, 300
    height = row_h * len(checks) + 8
    items = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 60}" height="{height}" role="img" '
             f'aria-label="pass rate per check" id="pass-rates">']  # fmt: skip
    for index, (check_id, name) in enumerate(checks):
        graded = [r.check(check_id) for r in results if r.check(check_id) is not None]
        passed = sum(1 for c in graded if c.outcome == PASSED)
        rate = passed / len(graded) if graded else 0.0
        y = 4 + index * row_h
        items.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{esc(check_id)}<title>{esc(name)}</title></text>')
        items.append(f'<rect class="track" x="{label_w}" y="{y + 3}" width="{bar_w}" height="16"/>')
        items.append(f'<rect class="rate" x="{label_w}" y="{y + 3}" width="{bar_w * rate:.1f}" height="16">'
                     f"<title>{passed} of {len(graded)}</title></rect>")  # fmt: skip
        items.append(f'<text x="{label_w + bar_w + 6}" y="{y + 15}">{round(rate * 100)}%</text>')
    items.append("</svg>")
    return "".join(items)


# --- The table and the pairs ---------------------------------------------------------------


def failed_checks(result: SubmissionResult) -> list[str]:
    failed = [c.id for c in result.checks if c.outcome != PASSED]
    return failed + (["leaked"] if result.leaked_credentials else [])


def class_table(results: list[SubmissionResult], checks: list[tuple[str, str]]) -> str:
    repositories = any(r.provenance for r in results)
    head = ['<th data-key="name" data-type="text"><button type="button">submission</button></th>',
            '<th data-key="score" data-type="number" class="num"><button type="button">score</button></th>']  # fmt: skip
    head += [f'<th data-key="check-{esc(i)}" data-type="number" class="num"><button type="button" title="{esc(n)}">{esc(i)}</button></th>'
             for i, n in checks]  # fmt: skip
    if repositories:
        head += ['<th>graded commit</th>', '<th data-key="late" data-type="number" class="num"><button type="button">late</button></th>']
    head += ['<th data-key="leaks" data-type="number" class="num"><button type="button">leaked credentials</button></th>',
             '<th data-key="seconds" data-type="number" class="num"><button type="button">seconds</button></th>']  # fmt: skip
    rows = []
    for result in results:
        name = esc(result.name)
        data = {"name": result.name, "score": format_points(result.score), "failed": " ".join(failed_checks(result)),
                "leaks": str(result.leaked_credentials), "seconds": f"{result.seconds:.0f}"}  # fmt: skip
        cells = [f'<td><a href="#s-{name}">{name}</a>' + (' <span class="muted">reused</span>' if result.reused_from else "") + "</td>",
                 f'<td class="num">{format_points(result.score)}/{format_points(result.max_score)}</td>']  # fmt: skip
        for check_id, _name in checks:
            check = result.check(check_id)
            data[f"check-{check_id}"] = format_points(check.score) if check else ""
            cells.append(f'<td class="num {OUTCOME_CLASS[check.outcome]}">{_cell(check)}</td>' if check else "<td>-</td>")
        if repositories:
            origin = result.provenance
            graded = origin.graded.sha[:12] if origin and origin.graded else "-"
            late = len(origin.late) if origin else 0
            data["late"] = str(late)
            cells += [f"<td><code>{esc(graded)}</code></td>", f'<td class="num">{late}</td>']
        leaks = f'<span class="leak">{result.leaked_credentials}</span>' if result.leaked_credentials else "0"
        cells += [f'<td class="num">{leaks}</td>', f'<td class="num">{result.seconds:.0f}</td>']
        attributes = " ".join(f'data-{key}="{esc(value)}"' for key, value in data.items())
        rows.append(f'<tr id="row-{name}" {attributes}>{"".join(cells)}</tr>')
    options = ['<option value="">every submission</option>']
    options += [f'<option value="{esc(i)}">failed: {esc(n)}</option>' for i, n in checks]
    options.append('<option value="leaked">leaked credentials</option>')
    return "\n".join([
        '<section id="class"><h2>Class</h2>',
        f'<div class="controls"><label>Show <select id="filter">{"".join(options)}</select></label> '
        '<span class="muted">Click a column to sort; #sort=-score or #filter=fetch in the address do the same.</span></div>',
        f'<table id="grades"><thead><tr>{"".join(head)}</tr></thead><tbody>',
        *rows,
        "</tbody></table></section>",
    ])  # fmt: skip


def _cell(check) -> str:
    # A check worth nothing is a flag: its points would say 0 whatever it found.
    if check.max_score == 0 and check.score == 0:
        return "ok" if check.outcome == PASSED else "flagged"
    return format_points(check.score)


def similar_pairs(pairs: list[Pair]) -> str:
    if not pairs:
        return '<section id="similarity"><h2>Similar playbooks</h2><p class="muted">No pair of playbooks is similar.</p></section>'
    rows = [f'<tr><td><a href="#s-{esc(p.first)}">{esc(p.first)}</a></td><td><a href="#s-{esc(p.second)}">{esc(p.second)}</a></td>'
            f'<td class="num">{p.score:.2f}</td><td>{"byte-identical" if p.identical_file else "near-identical" if p.score >= NEAR_IDENTICAL else ""}</td></tr>'
            for p in pairs[:TOP_PAIRS]]  # fmt: skip
    return "\n".join([
        '<section id="similarity"><h2>Similar playbooks</h2>',
        '<p class="muted">Task order, names, comments and whitespace set aside (similarity.csv lists every pair from 0.5). '
        "A flag to look at, not a verdict: a small assignment has few right answers.</p>",
        '<table><thead><tr><th>submission</th><th>submission</th><th class="num">score</th><th></th></tr></thead><tbody>',
        *rows,
        "</tbody></table></section>",
    ])  # fmt: skip


# --- Each student ------------------------------------------------------------------------


def student(result: SubmissionResult, out_dir: Path) -> str:
    name = esc(result.name)
    folder = out_dir / result.name
    links = [f'<a href="{href(result.name, file)}">{file}</a>' for file in ("log.txt", "configure.yaml", "results.json") if (folder / file).is_file()]
    fetched = sorted(p for p in (folder / "resultados").rglob("*") if p.is_file()) if (folder / "resultados").is_dir() else []
    links += [f'<a href="{href(result.name, *p.relative_to(folder).parts)}">{esc(p.relative_to(folder).as_posix())}</a>'
              for p in fetched[:MAX_LINKED_FILES]]  # fmt: skip
    shown_links = " ".join(links) or '<span class="muted">no files</span>'
    parts = [f'<article id="s-{name}"><h3>{name}: {format_points(result.score)}/{format_points(result.max_score)}</h3>',
             f'<p class="links">{shown_links}</p>']  # fmt: skip
    lines = result.summary_lines[1:]
    if lines:
        parts.append("<pre>" + "\n".join(esc(line) for line in lines) + "</pre>")
    findings = [(int(m.group(1)), m.group(2)) for c in result.checks for line in c.feedback if (m := FINDING.match(line))]
    if findings:
        parts.append("<p>Findings in configure.yaml:</p><ul class=\"findings\">")
        parts += [f'<li><span class="line">line {number}</span>: {esc(text)}</li>' for number, text in sorted(findings)]
        parts.append("</ul>")
    parts.append('<table><thead><tr><th>check</th><th class="num">points</th><th>feedback</th></tr></thead><tbody>')
    for check in result.checks:
        feedback = "\n".join(esc(line) for line in check.feedback)
        parts.append(f'<tr><td class="{OUTCOME_CLASS[check.outcome]}">{esc(check.name)}</td>'
                     f'<td class="num">{format_points(check.score)}/{format_points(check.max_score)}</td><td><pre>{feedback}</pre></td></tr>')  # fmt: skip
    parts.append("</tbody></table></article>")
    return "\n".join(parts)
