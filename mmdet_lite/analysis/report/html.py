"""Render the report page: one html file with its CSS and JavaScript inline.

The page needs no server and no network: it links only to PNG/JPG files in its own folder
(relative paths) and to anchors in itself. Its script records what went wrong while the page
loaded, so a headless browser's DOM dump shows it: uncaught errors and images that failed
to load go into ``<pre id="errors">``, and each ``<img>`` gets ``data-loaded="yes"`` or
``"no"`` once the page has loaded (``<body data-ready="1">``). Table headers sort their
column on click.
"""
import html
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0;
  color: #1f2328; background: #f6f8fa; }
header { background: #24292f; color: #fff; padding: 14px 28px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header .facts { font-size: 13px; color: #c9d1d9; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #d0d7de;
  padding: 8px 28px; z-index: 1; }
nav a { margin-right: 18px; color: #0969da; text-decoration: none; font-size: 14px; }
main { padding: 8px 28px 40px 28px; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; margin: 18px 0;
  padding: 12px 20px; }
h2 { font-size: 18px; margin: 6px 0 12px 0; }
h3 { font-size: 15px; margin: 14px 0 8px 0; }
table { border-collapse: collapse; font-size: 14px; margin-bottom: 10px; }
th, td { border: 1px solid #d0d7de; padding: 4px 12px; text-align: right; }
th { background: #f0f3f6; cursor: pointer; user-select: none; }
td:first-child, th:first-child { text-align: left; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.charts img { max-width: 100%; border: 1px solid #eaeef2; }
.charts img.confusion { max-width: 520px; }
.note { color: #57606a; font-size: 13px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr));
  gap: 14px; }
figure { margin: 0; border: 1px solid #eaeef2; padding: 6px; background: #fafbfc; }
figure img { width: 100%; }
figcaption { font-size: 12px; color: #57606a; margin-top: 4px; word-break: break-all; }
#errors { color: #cf222e; margin: 0 28px; white-space: pre-wrap; }
#errors:empty { display: none; }
"""

# Load-time checks and sortable tables. The error listener is registered in <head>, in the
# capture phase: image load errors do not bubble, but they do pass the window on the way.
HEAD_JS = """
var reportErrors = [];
window.addEventListener('error', function (event) {
  var target = event.target;
  if (target && target.tagName === 'IMG') {
    reportErrors.push('image failed to load: ' + target.getAttribute('src'));
  } else {
    reportErrors.push('script error: ' + event.message);
  }
}, true);
window.addEventListener('load', function () {
  document.querySelectorAll('img').forEach(function (img) {
    var ok = img.complete && img.naturalWidth > 0;
    img.setAttribute('data-loaded', ok ? 'yes' : 'no');
    if (!ok && reportErrors.indexOf('image failed to load: ' + img.getAttribute('src')) < 0) {
      reportErrors.push('image failed to load: ' + img.getAttribute('src'));
    }
  });
  document.getElementById('errors').textContent = reportErrors.join('\\n');
  document.body.setAttribute('data-ready', '1');
});
function sortTable(th) {
  var table = th.closest('table'), column = th.cellIndex, body = table.tBodies[0];
  var ascending = th.getAttribute('data-order') !== 'asc';
  th.setAttribute('data-order', ascending ? 'asc' : 'desc');
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = a.cells[column].getAttribute('data-value') || a.cells[column].textContent;
    var y = b.cells[column].getAttribute('data-value') || b.cells[column].textContent;
    var nx = parseFloat(x), ny = parseFloat(y);
    var cmp = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
    return ascending ? cmp : -cmp;
  });
  rows.forEach(function (row) { body.appendChild(row); });
}
"""


@dataclass
class ClassSection:
    """Per-class AP of one IoU type: table rows and the two chart files."""
    iou_type: str
    rows: List[Tuple[str, int, float, float, float]]  # class, gts, AP, AP50, AP75
    ap_image: str
    pr_image: str


@dataclass
class WorstImage:
    """One image of the gallery: the drawing's file name and what the caption says."""
    image: str
    name: str
    index: int
    map_value: float


@dataclass
class ReportPage:
    """Everything the page shows; image fields are file names relative to the page."""
    title: str
    facts: List[str]
    metrics: List[Tuple[str, float]]
    class_sections: List[ClassSection] = field(default_factory=list)
    confusion_image: Optional[str] = None
    confusion_note: str = ''
    worst_images: List[WorstImage] = field(default_factory=list)
    worst_note: str = ''
    curves_image: Optional[str] = None
    curves_note: str = ''


def format_value(value, digits: Optional[int] = None) -> str:
    """A number as the page shows it: ints as they are, floats with ``digits`` decimals or,
    by default, 3 (CocoMetric rounds to 3) and 4 if 3 would hide digits; 'n/a' for NaN."""
    if isinstance(value, (bool, int)):
        return str(int(value))
    if not isinstance(value, float):
        return html.escape(str(value))
    if math.isnan(value):
        return 'n/a'
    if digits is None:
        digits = 3 if abs(value - round(value, 3)) < 1e-9 else 4
    return f'{value:.{digits}f}'


def _cell(value, digits: Optional[int] = None) -> str:
    if isinstance(value, str):
        return f'<td>{html.escape(value)}</td>'
    return f'<td data-value="{value!r}">{format_value(value, digits)}</td>'


def _table(table_id: str, headers: Sequence[str], rows: Sequence[Sequence],
           digits: Optional[int] = None) -> str:
    head = ''.join(f'<th onclick="sortTable(this)">{html.escape(h)}</th>' for h in headers)
    body = '\n'.join('<tr>' + ''.join(_cell(v, digits) for v in row) + '</tr>'
                     for row in rows)
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead>\n'
            f'<tbody>\n{body}\n</tbody></table>')


def _img(src: str, alt: str, css_class: str = '') -> str:
    src = html.escape(src, quote=True)
    extra = f' class="{css_class}"' if css_class else ''
    return (f'<a href="{src}"><img src="{src}" alt="{html.escape(alt, quote=True)}"{extra}>'
            '</a>')


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>' if text else ''


def _class_section(section: ClassSection) -> str:
    table = _table(f'per-class-{section.iou_type}',
                   ['class', 'objects', 'AP', 'AP@0.5', 'AP@0.75'], section.rows, digits=3)
    return (f'<h3>{section.iou_type}</h3>\n<div class="charts">{table}\n'
            f'{_img(section.ap_image, section.iou_type + " AP per class")}</div>\n')


def render_report(page: ReportPage) -> str:
    """The html text of the report page."""
    metrics = (_table('metrics', ['metric', 'value'], page.metrics) +
               _note("Computed from the predictions by the config's test_evaluator."))
    curves = _img(page.curves_image, 'training curves') if page.curves_image else ''
    per_class = ''.join(_class_section(s) for s in page.class_sections)
    per_class += _note('COCOeval against the test dataset\'s annotations (area all, up to '
                       '1000 detections per image), as CocoMetric(classwise=True) reports '
                       'it; n/a: no object of that class.')
    pr_curves = ''.join(f'<h3>{s.iou_type}</h3><div class="charts">'
                        f'{_img(s.pr_image, s.iou_type + " precision-recall")}</div>'
                        for s in page.class_sections)
    pr_curves += _note('Interpolated precision at 101 recall points (COCOeval), for each '
                       'class with objects; black: their mean.')
    confusion = (_img(page.confusion_image, 'confusion matrix', 'confusion')
                 if page.confusion_image else '')
    figures = '\n'.join(
        f'<figure>{_img(w.image, w.name)}<figcaption>#{w.index} {html.escape(w.name)} '
        f'&mdash; mAP <span class="image-map" data-value="{w.map_value!r}">'
        f'{format_value(w.map_value, 3)}</span></figcaption></figure>'
        for w in page.worst_images)
    sections = [  # (anchor, title, content)
        ('metrics-section', 'Metrics', metrics),
        ('training', 'Training curves',
         f'<div class="charts">{curves}</div>{_note(page.curves_note)}'),
        ('per-class', 'Per-class AP', per_class),
        ('pr-curves', 'Precision-recall curves', pr_curves),
        ('confusion', 'Confusion matrix',
         f'<div class="charts">{confusion}</div>{_note(page.confusion_note)}'),
        ('worst', 'Worst images',
         f'{_note(page.worst_note)}<div class="gallery">{figures}</div>'),
    ]
    body = '\n'.join(f'<section id="{anchor}"><h2>{title}</h2>\n{content}</section>'
                     for anchor, title, content in sections)
    nav = ''.join(f'<a href="#{anchor}">{title}</a>' for anchor, title, _ in sections)
    facts = '<br>'.join(html.escape(f) for f in page.facts)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(page.title)}</title>
<style>{CSS}</style>
<script>{HEAD_JS}</script>
</head>
<body>
<header><h1>{html.escape(page.title)}</h1><div class="facts">{facts}</div></header>
<nav>{nav}</nav>
<pre id="errors"></pre>
<main>
{body}
</main>
</body>
</html>
"""
