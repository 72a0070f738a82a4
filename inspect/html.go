package inspect

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"path/filepath"
	"time"

	"github.com/criukit/criukit/ckpt"
	"github.com/criukit/criukit/cow"
)

// ProcMap is one process' memory map for the HTML report.
type ProcMap struct {
	Pid  uint32 `json:"pid"`
	Comm string `json:"comm"`
	VMAs []VMA  `json:"vmas"`
}

type htmlData struct {
	Report    *Report     `json:"report"`
	Maps      []ProcMap   `json:"maps"`
	COW       *cow.Result `json:"cow,omitempty"`
	COWNote   string      `json:"cow_note,omitempty"`
	Generated string      `json:"generated"`
}

// WriteHTML writes a self-contained HTML report of an opened checkpoint: container and sizes, CRIU
// statistics, the process tree with command lines and environments, a per-VMA memory map of every
// process (present / parent / lazy / zero pages), COW sharing when the images come from
// `criukit dump --cow`, files, sockets and mounts. Data is embedded as JSON and rendered by inline
// script with textContent only (names from the dump cannot inject markup); no network access.
func WriteHTML(w io.Writer, c *ckpt.Checkpoint, o Options) error {
	r, err := Collect(c, o)
	if err != nil {
		return err
	}
	im, err := NewImages(c)
	if err != nil {
		return err
	}
	tasks, err := im.Tasks()
	if err != nil {
		return err
	}
	d := htmlData{Report: r, Generated: time.Now().UTC().Format(time.RFC3339)}
	for _, t := range tasks {
		if !t.HasMemory() || o.Pid != 0 && !inTree(r, t.Pid()) {
			continue
		}
		vmas, _, err := im.MemoryMap(t)
		if err != nil {
			return err
		}
		d.Maps = append(d.Maps, ProcMap{Pid: t.Pid(), Comm: t.Core.GetTc().GetComm(), VMAs: vmas})
	}
	if c.Kind == ckpt.KindImageDir {
		dir := filepath.Join(c.Path, c.ImagesPath())
		if cow.IsDeduped(dir) {
			if res, err := cow.Stats(dir); err == nil {
				d.COW = res
			} else {
				d.COWNote = err.Error()
			}
		}
	}
	js, err := json.Marshal(d) // escapes <, > and & : safe inside <script>
	if err != nil {
		return err
	}
	return htmlTmpl.Execute(w, map[string]any{"Title": title(r), "Data": template.JS(js)})
}

func inTree(r *Report, pid uint32) bool {
	roots := r.Roots
	if roots == nil && r.Tree != nil {
		roots = []*Process{r.Tree}
	}
	return find(roots, pid) != nil
}

func title(r *Report) string {
	if r.Container != nil && r.Container.Name != "" {
		return fmt.Sprintf("checkpoint of %s (%s)", r.Container.Name, filepath.Base(r.Path))
	}
	return "checkpoint " + filepath.Base(r.Path)
}

var htmlTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{{.Title}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f4f4f4}.mono,td.mono{font-family:ui-monospace,monospace;font-size:12px}
ul.tree,ul.tree ul{list-style:none;padding-left:1.2em;border-left:1px dotted #aaa}
.bar{display:flex;width:320px;height:12px;background:#eee;border:1px solid #bbb}
.bar span{display:block;height:100%}.present{background:#2b7bd6}.parent{background:#e08a1e}.lazy{background:#9b59b6}.zero{background:#ddd}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
details{margin:.2em 0}.warn{color:#a40}
</style></head>
<body>
<h1 id="title">{{.Title}}</h1>
<noscript>This report renders its tables with inline JavaScript; the raw data is in the script element "data".</noscript>
<div id="summary"></div>
<h2>Process tree</h2><ul class="tree" id="ps-tree"></ul>
<h2>Memory</h2>
<div class="legend">pages:<span class="present"></span>present in pages-*.img<span class="parent"></span>in a parent dump (incremental, or shared through COW dedup)<span class="lazy"></span>lazy<span class="zero"></span>not dumped (never touched, or file-backed)</div>
<div id="cow"></div>
<div id="memory"></div>
<h2>Files</h2><div id="files"></div>
<h2>Sockets</h2><div id="sockets"></div>
<h2>Mounts</h2><div id="mounts"></div>
<h2>CRIU statistics</h2><div id="stats"></div>
<p class="mono" id="footer"></p>
<script type="application/json" id="data">{{.Data}}</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const R = D.report;
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function human(n) {
  const u = ["B","KiB","MiB","GiB","TiB"]; let i = 0;
  while (n >= 1024 && i < u.length-1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function hex(n) { return "0x" + n.toString(16); }
function table(head, rows, cls) {
  const t = el("table", cls ? {class: cls} : {});
  t.append(el("tr", {}, ...head.map(h => el("th", {}, h))));
  for (const r of rows) t.append(el("tr", {}, ...r.map(c => c instanceof Node ? el("td", {}, c) : el("td", {class: "mono"}, c))));
  return t;
}
// summary
const kv = [];
if (R.engine) kv.push(["Container", R.container_name], ["Image", R.image], ["ID", R.id], ["Runtime", R.runtime],
  ["Created", R.created], ["Checkpointed", R.checkpointed || "-"], ["Engine", R.engine], ["IP", R.ip || "-"]);
kv.push(["Path", R.path], ["Kind", R.kind + (R.compression ? " (" + R.compression + ")" : "")],
  ["Checkpoint size", human(R.checkpoint_size.total_size || 0)], ["Memory pages", human(R.checkpoint_size.memory_pages_size || 0)],
  ["Root FS diff", human(R.checkpoint_size.root_fs_diff_size || 0)]);
document.getElementById("summary").append(table(["", ""], kv));
for (const w of R.warnings || []) document.getElementById("summary").append(el("p", {class: "warn"}, "warning: " + w));
// process tree
function psNode(p) {
  const li = el("li", {class: "proc", "data-pid": p.pid}, el("b", {}, "[" + p.pid + "] " + p.command), " ",
    p.task_state && p.task_state !== "Alive" ? "(" + p.task_state + ") " : "", el("span", {class: "mono"}, p.cmdline || ""));
  if (p.environment && p.environment.length) {
    const d = el("details", {}, el("summary", {}, "environment (" + p.environment.length + ")"));
    d.append(el("pre", {class: "mono"}, p.environment.join("\n")));
    li.append(d);
  }
  if (p.error) li.append(el("div", {class: "warn"}, p.error));
  if (p.children) { const ul = el("ul"); for (const k of p.children) ul.append(psNode(k)); li.append(ul); }
  return li;
}
const roots = R.process_roots || (R.process_tree ? [R.process_tree] : []);
for (const p of roots) document.getElementById("ps-tree").append(psNode(p));
// memory maps
const mem = document.getElementById("memory");
for (const m of D.maps || []) {
  const sec = el("section", {class: "memmap", id: "mem-" + m.pid});
  let pres = 0, par = 0, virt = 0;
  const rows = m.vmas.map(v => {
    pres += v.present; par += v.parent; virt += v.pages;
    const bar = el("div", {class: "bar", title: v.present + " present, " + v.parent + " parent, " + (v.lazy||0) + " lazy, " + v.zero + " not dumped"});
    for (const [k, n] of [["present", v.present], ["parent", v.parent], ["lazy", v.lazy || 0], ["zero", v.zero]])
      if (n > 0) bar.append(el("span", {class: k, style: "width:" + (100 * n / Math.max(v.pages, 1)).toFixed(2) + "%"}));
    const tr = [hex(v.start) + "-" + hex(v.end), v.prot, v.kind, v.path || "", String(v.pages), String(v.present), String(v.parent), String(v.zero), bar];
    return tr;
  });
  sec.append(el("h3", {}, "[" + m.pid + "] " + m.comm + ": " + m.vmas.length + " VMAs, " + human(virt * 4096) + " virtual, " +
    human(pres * 4096) + " present, " + human(par * 4096) + " in parent"));
  const t = table(["range", "prot", "kind", "path", "pages", "present", "parent", "not dumped", "map"], rows, "vmas");
  for (const tr of t.querySelectorAll("tr")) if (tr.firstChild.tagName === "TD") tr.className = "vma";
  sec.append(t);
  mem.append(sec);
}
// COW sharing
const cowDiv = document.getElementById("cow");
if (D.cow) {
  cowDiv.append(el("p", {}, "COW dedup (criukit dump --cow): pages files " + human(D.cow.pages_bytes_after) +
    (D.cow.pages_bytes_before ? " instead of " + human(D.cow.pages_bytes_before) : "") + ", " + D.cow.levels + " parent levels."));
  cowDiv.append(table(["pid", "ppid", "pages", "stored", "shared (deduped)", "taken from"],
    D.cow.processes.map(p => [String(p.pid), String(p.ppid), String(p.pages), String(p.stored), String(p.deduped),
      Object.entries(p.sources || {}).map(([k, v]) => "pid " + k + ": " + v).join(", ")]), "cow"));
} else if (D.cow_note) cowDiv.append(el("p", {class: "warn"}, D.cow_note));
// files, sockets, mounts, stats
document.getElementById("files").append(table(["pid", "fd", "type", "path"],
  (R.file_descriptors || []).flatMap(t => (t.open_files || []).map(f => [String(t.pid), f.fd, f.type, f.path]))));
document.getElementById("sockets").append(table(["pid", "fd", "protocol", "state", "local", "remote", "recv queue", "send queue", "buffers"],
  (R.sockets || []).flatMap(t => (t.open_sockets || []).map(s => {
    const d = s.data;
    const unix = n => n.startsWith("\0") ? "@" + n.slice(1).replace(/\0+$/, "") : n.replace(/\0+$/, "");
    const local = d.address !== undefined ? unix(d.address) : (d.src || "") + (d.src_port ? ":" + d.src_port : "");
    const remote = (d.dst || "") + (d.dst_port ? ":" + d.dst_port : "");
    return [String(t.pid), String(d.fd), s.protocol, d.state || "", local, remote, String(d.inq_bytes || 0), String(d.outq_bytes || 0), (d.send_buf || "") + " / " + (d.recv_buf || "")];
  }))));
document.getElementById("mounts").append(table(["destination", "type", "source"], (R.mounts || []).map(m => [m.destination, m.type, m.source])));
if ((R.criu_mounts || []).length)
  document.getElementById("mounts").append(el("h3", {}, "CRIU mount points"),
    table(["id", "parent", "mountpoint", "fstype", "source", "root"], R.criu_mounts.map(m => [String(m.mnt_id), String(m.parent_mnt_id), m.mountpoint, m.fstype, m.source || "", m.root])));
if (R.statistics) document.getElementById("stats").append(table(["statistic", "value"], Object.entries(R.statistics).map(([k, v]) => [k, String(v)])));
document.getElementById("footer").append("criukit inspect --html, generated " + D.generated);
document.body.setAttribute("data-rendered", "yes");
</script>
</body></html>
`))
