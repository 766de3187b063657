"""The HTML report: every stage of a run renders, failed and finished runs say why, files stay text,
nothing leaves the page, and headless Chromium shows the numbers with no console error or request."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, SCRIPTS

from support import cdp
from support.report_run import HOSTILE, HOSTILE_ATTR, RunBuilder, far_pct
from tao_aoi import fmt
from tao_aoi.analysis import metric_contract
from tao_aoi.layout import Results
from tao_aoi.report import build, render, sources
from tao_aoi.state import deft_state, pipeline_state, stages
from tooling import require_tool


def render_text(results: Path) -> str:
    path, _ = render.render(results)
    return path.read_text(encoding="utf-8")


def parsed_tags(html: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every start tag with its attributes, as a browser's tokenizer sees them."""
    from html.parser import HTMLParser

    tags: list = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, [(a, v or "") for a, v in attrs]))

    P().feed(html)
    return tags


def banner(html: str) -> tuple[str, str]:
    m = re.search(r'id="kpi-banner" data-kind="([a-z]+)">\s*<div class="headline">([^<]*)</div>', html)
    assert m, "no KPI banner"
    return m.group(1), m.group(2)


# --------------------------------------------------------------------------- runs (built once per module)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> RunBuilder:
    b = RunBuilder(tmp_path_factory.mktemp("finished"))
    b.init()
    b.finish(phase3=True)
    render.render(b.results)
    return b


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> RunBuilder:
    b = RunBuilder(tmp_path_factory.mktemp("hostile"), hostile=True)
    b.init()
    b.finish(phase3=True)
    render.render(b.results)
    return b


@pytest.fixture(scope="module")
def failed(tmp_path_factory) -> RunBuilder:
    b = RunBuilder(tmp_path_factory.mktemp("failed"))
    b.init()
    b.automl("phase1", 10)
    b.until("iter1", "routing")
    b.step(status="error", summary="allocation mismatch: MISSING was allocated 6 of num_sdg=12 rows but the pool "
                                   "has only 2 unused samples")
    render.render(b.results)
    return b


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> RunBuilder:
    b = RunBuilder(tmp_path_factory.mktemp("partial"))
    b.init()
    b.until("iter1", "mining")
    render.render(b.results)
    return b


# --------------------------------------------------------------------------- formatting


def test_numbers_keep_the_precision_the_reader_needs():
    assert fmt.distinct(0.018, [0.02]) == "0.018"
    assert fmt.distinct(1.99996, [2.0]) == "1.99996"  # would print "2" at 4 digits, like the target
    assert fmt.distinct(2.0, [2.0, 2.5]) == "2"
    assert fmt.num(1000.0) == "1000" and fmt.num(12345678.9) == "12345679" and fmt.num(1234567) == "1234567"
    assert "," not in fmt.num(1e7) and fmt.num(float("nan")) == "n/a" and fmt.num(True) == "n/a"
    below = 0.49999999999999994
    assert float(fmt.exact(below)) == below and fmt.exact(below) != "0.5"
    assert fmt.signed(-6.75, "%") == "-6.75 pp" and fmt.signed(0.5) == "+0.5"


def test_chart_ticks_are_exact_and_separator_free():
    from tao_aoi.report import svg

    ticks = svg.nice_ticks(0.0, 1234.5)
    texts = svg.tick_texts(ticks)
    assert texts[0] == "0" and all("," not in t for t in texts)
    assert svg.tick_texts([0.0, 0.025, 0.05]) == ["0.000", "0.025", "0.050"]


# --------------------------------------------------------------------------- partial / failed / finished


def test_renders_after_every_stage_of_a_run(tmp_path):
    """From init to Phase 3's finalize, each committed stage leaves a renderable run."""
    b = RunBuilder(tmp_path)
    b.init()
    kind, head = banner(render_text(b.results))
    assert (kind, head) == ("progress", "In progress: next baseline/train")
    seen = 0
    while True:
        nxt = b.expected(phase3=True)
        if nxt is None:
            break
        if nxt == ("final_automl", "train"):
            b.automl("phase3", 6)
        b.step(phase3=True)
        seen += 1
        html = render_text(b.results)
        st = b.state()
        kind, head = banner(html)
        if st["status"] == "complete":
            assert kind == "met", head
        else:
            want = stages.expected_next(st) or ("final_automl", "train")
            assert (kind, head) == ("progress", f"In progress: next {want[0]}/{want[1]}")
        if "iter1" not in st["iterations"]:
            assert html.count("not run yet") >= 3  # routing/SDG/mining, AutoML, deliverable spec
    assert seen == 3 + 7 + 6 + 1 + 2 + 1  # baseline, iter1 (with rca), iter2 (stops: KPI met), finalize, phase 3


def test_partial_run_shows_what_exists_and_what_does_not(partial):
    html = (partial.results / "DEFT_Loop_Report.html").read_text()
    assert banner(html) == ("progress", "In progress: next iter1/assemble")
    assert f"{fmt.num(far_pct('baseline'))}%" in html
    assert "best so far" in html
    sec = html.split('id="data"')[1]
    assert "AnomalyGen cannot synthesise it" in sec  # routing table (TOMBSTONE dropped)
    assert "num_sdg: 12" in sec and "mined rows" in sec
    assert "not run yet" in html.split('id="automl"')[1].split('id="rca"')[0]  # no AutoML in this run
    assert "not written yet (prepare_inference_spec.py" in html


def test_failed_run_names_the_stage_and_the_reason(failed):
    html = (failed.results / "DEFT_Loop_Report.html").read_text()
    assert banner(html) == ("stopped", "Hard stop at iter1/sdg")
    assert "allocation mismatch: MISSING was allocated 6 of num_sdg=12 rows" in html
    assert "retry iter1/sdg" in html
    assert "the stage failed (see the event log); nothing was written" in html  # SDG section
    assert "Phase 1: AutoML baseline" in html and "10 trials" in html


def test_finished_run_shows_the_trajectory_and_the_deliverable_the_state_chose(finished):
    st = finished.state()
    html = (finished.results / "DEFT_Loop_Report.html").read_text()
    best_model = json.loads(Results(finished.results).best_model.read_text())
    assert st["best_iteration"] == best_model["iteration"] == "iter2"
    assert banner(html) == ("met", "KPI met: FAR &lt; 2%")
    rows = re.findall(r'<tr class="([^"]*)" data-iteration="([^"]+)">', html)
    assert [r[1] for r in rows] == ["baseline", "iter1", "iter2", "final_automl"]
    assert dict((lb, cls) for cls, lb in rows)["iter2"] == "best"
    for label in ("baseline", "iter1", "iter2", "final_automl"):
        v = st["iterations"][label]["metric_result"]["value"]
        assert f'data-value="{fmt.exact(v)}">{fmt.num(v)}%' in html
    assert "did not improve on the contract; iter2 stays the deliverable" in html
    thr = st["iterations"]["iter2"]["metric_result"]["threshold"]
    assert fmt.exact(thr) in html.split('id="deliverable"')[1]
    assert "Phase 3: AutoML refinement" in html and "12 trials" in html
    for label, phase in (("baseline", "phase1"), ("final_automl", "phase3")):  # Phase 1/3 winners' own trials
        best = json.loads((finished.results / "automl" / phase / "best_rec.json").read_text())["best"]
        row = re.search(rf'data-iteration="{label}">(.*?)</tr>', html, re.S).group(1)
        assert f"AutoML trial {best['trial']}: val_far_pct_at_recall_100 {fmt.num(best['score'])} on the validation" in row
    # training rows, synthetic and mined rows per iteration come from the assembly's validation report
    for label in ("iter1", "iter2"):
        rep = json.loads((finished.results / label / "dataset" / "validation_report.json").read_text())
        row = re.search(rf'data-iteration="{label}">(.*?)</tr>', html, re.S).group(1)
        cells = re.findall(r'<td class="num">([^<]*)</td>', row)
        assert [rep["combined_rows"], rep["new_by_source"]["sdg"], rep["new_by_source"]["mined"]] ==\
            [int(c) for c in cells[2:5]]  # after the delta and the FAR interval
        mr = st["iterations"][label]["metric_result"]
        lo, hi = mr["far_ci95_pct"]
        assert cells[1] == f"{fmt.num(lo)}-{fmt.num(hi)}%" and lo <= mr["far_pct"] <= hi
        cal = mr["calibrated"]["kpi"]
        assert f'<td class="num calibrated">{fmt.num(cal["far_pct"])}% / {fmt.num(cal["recall_pct"])}%</td>' in row
    assert html.count('src="data:image/jpeg;base64,') == 20  # 10 spot-check sheets per RCA, 2 RCAs
    assert "mislabeled" in html and "label says PASS, solder bridge visible" in html  # agent verdicts
    m = json.loads(sorted(finished.results.glob("*/rca/metrics.json"))[-1].read_text())
    rca_html = html.split('id="rca"')[1].split("</section>")[0]
    assert "What pins the threshold" in rca_html and "Headless run" not in rca_html
    for s in m["limiting_samples"]:
        assert f"<td>{s['object_name']}</td>" in rca_html
    assert "KPI set per label at iter2" in html and "recall 99.5%: FAR" in html
    # the headline's three figures: contract (said to be the set that chose the model), calibrated, no holdout
    figures = html.split('id="figures"')[1].split("</div>")[0]
    assert 'data-final="yes"' in html and "The deliverable (iter2)" in figures
    assert "which also chose this model" in figures and "chosen on the validation set" in figures
    assert "No holdout: the KPI figure was measured on the set that chose the deliverable" in figures
    assert "the set that also chose this model (no holdout: expect worse on the line)" in html.split('id="figures-headline">')[1]
    dep = best_model["deployment"]
    assert f"Ships threshold {fmt.exact(dep['threshold'])} (eval_margin)" in figures
    deliverable_html = html.split('id="deliverable"')[1]
    assert f"<td>{fmt.exact(dep['threshold'])}</td>" in deliverable_html
    assert "min_recall</th><td>100%" in html  # recall in percent, never the ratio


def test_best_is_the_state_rule_even_when_a_failed_iteration_looks_better(finished, tmp_path):
    """The anchor's renderer crowned failed iterations (B9); only complete candidates count here."""
    run = sources.load_run(finished.results)
    st = json.loads(json.dumps(run.state))
    st["status"] = "in_progress"
    st["iterations"]["iter2"]["status"] = "failed"  # a better metric, but not a complete candidate
    report = build.Report(sources.Run(run.results, st, run.events), "now")
    assert report.best == metric_contract.pick_best(st["metric_contract"], deft_state.candidates(st)) == "final_automl"
    assert report.banner()["detail"].startswith("best FAR 2.25% at final_automl")


def test_pipeline_stop_before_deft_is_a_hard_stop(tmp_path):
    run = tmp_path / "run"
    (run / "automl" / "phase1").mkdir(parents=True)
    why = "no feasible AutoML trial among 8 (8 collapsed to one class, 0 pruned, 0 failed); widen the search space"
    ps = {**pipeline_state.new({"phases": "all"}), "status": "failed", "failure": why}
    pipeline_state.save(Results.at(run), ps, f"hard stop: {why}", status="error")
    html = render_text(run)
    assert banner(html) == ("stopped", "Hard stop before the DEFT loop")
    assert why in html and "not run yet" in html


def test_not_started_and_unreadable_runs(tmp_path, script):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = script("render_report.py", "--results-dir", str(empty), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "not_started" and Path(out["report"]).is_file()
    assert "DEFT loop not started" in Path(out["report"]).read_text()

    missing = script("render_report.py", "--results-dir", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nope does not exist" in missing.stderr

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "loop_log.jsonl").write_text('{"seq": 1, "ts": "x"\n')
    proc = script("render_report.py", "--results-dir", str(broken))
    assert proc.returncode == 2 and "loop_log.jsonl line 1" in proc.stderr and proc.stderr.count("\n") == 1


def test_damaged_stage_files_degrade_to_a_message(finished, tmp_path):
    run = shutil.copytree(finished.results, tmp_path / "run")
    (run / "iter1" / "routing" / "routing_summary.json").write_text("{not json")
    (run / "iter1" / "sdg" / "allocation.json").unlink()
    (run / "automl" / "phase1" / "best_rec.json").write_text("[1, 2]")
    (run / "iter1" / "rca" / "rca_images").rename(run / "iter1" / "rca" / "moved")
    html = render_text(run)
    assert "routing_summary.json unreadable" in html
    assert "not available: the stage was committed but" in html and "allocation.json is missing" in html
    assert "best_rec.json unreadable" in html and "expected a JSON dict, found list" in html
    assert html.count("does not exist") >= 10  # each spot-check thumbnail says which file is missing
    assert banner(html)[0] == "met"


def test_a_failed_render_leaves_the_previous_report(finished, tmp_path, monkeypatch):
    run = shutil.copytree(finished.results, tmp_path / "run")
    before = (run / "DEFT_Loop_Report.html").read_bytes()

    def boom(self):
        raise RuntimeError("template bug")

    monkeypatch.setattr(build.Report, "context", boom)
    with pytest.raises(RuntimeError):
        render.render(run)
    assert (run / "DEFT_Loop_Report.html").read_bytes() == before
    assert not [p for p in run.iterdir() if p.name.startswith(".DEFT_Loop_Report")]


# --------------------------------------------------------------------------- escaping and isolation


def test_hostile_values_are_text(hostile):
    html = (hostile.results / "DEFT_Loop_Report.html").read_text()
    assert HOSTILE not in html and "<img src=x" not in html
    tags = parsed_tags(html)
    assert not [t for t, attrs in tags if t == "script" or any(a.startswith("on") for a, _ in attrs)]
    assert all(v.startswith("data:") for t, attrs in tags for a, v in attrs if a == "src")
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert "is outside the results folder; not embedded" in html  # rca_images entry pointing at ../../../etc/passwd
    svg_text = " ".join(re.findall(r"<svg.*?</svg>", html, re.S))
    assert "<script" not in svg_text


@pytest.mark.parametrize("which", ["finished", "hostile", "failed", "partial"])
def test_no_external_reference(which, request):
    html = (request.getfixturevalue(which).results / "DEFT_Loop_Report.html").read_text()
    assert not re.search(r"https?://", html)
    refs = [v for _, attrs in parsed_tags(html) for a, v in attrs if a in ("src", "href", "srcset", "poster", "action")]
    assert refs and all(v.startswith(("data:", "#")) for v in refs)
    assert "@import" not in html and not re.search(r"url\((?!data:)", html)
    assert not re.search(r"<(script|iframe|object|embed|link rel=\"stylesheet\")", html, re.I)


def test_reporter_agent_only_runs_the_script():
    import yaml

    text = (ROOT / "agents" / "reporter.md").read_text()
    fm = yaml.safe_load(text.split("---\n", 2)[1])
    assert fm["name"] == "reporter" and fm["tools"] == "Bash" and fm["description"]
    calls = re.findall(r'python3 "\$\{CLAUDE_PLUGIN_ROOT\}/scripts/([a-z_]+\.py)"', text)
    assert calls == ["render_report.py"] and (SCRIPTS / "render_report.py").exists()
    assert "--results-dir" in text and "exit status" in text


# --------------------------------------------------------------------------- headless Chromium


def chromium() -> str:
    return require_tool("chromium", "headless browser check of the HTML report (.ci/run installs Debian chromium)")


def open_in_browser(html: Path, work: Path) -> cdp.PageReport:
    page = cdp.inspect(chromium(), html, work)
    import io

    from PIL import Image

    assert page.screenshot[:8] == b"\x89PNG\r\n\x1a\n" and len(page.screenshot) > 10_000
    shot = Image.open(io.BytesIO(page.screenshot))
    assert shot.width == 1280 and shot.height > 900
    lo, hi = shot.convert("L").getextrema()
    assert hi - lo > 100, "blank screenshot"
    (work / "screenshot.png").write_bytes(page.screenshot)
    assert page.console_errors == [], page.console_errors
    assert page.outside_requests() == [], page.outside_requests()
    f = page.facts
    assert f["scripts"] == 0 and f["handlers"] == 0 and not f["pwned"] and f["nonDataSources"] == []
    assert f["imagesDecoded"] == f["images"]
    return page


@pytest.mark.integration
def test_browser_finished_run(finished, tmp_path):
    page = open_in_browser(finished.results / "DEFT_Loop_Report.html", tmp_path)
    f = page.facts
    assert f["bannerKind"] == "met" and "KPI met: FAR < 2%" in f["text"]
    st = finished.state()
    rows = {r["iteration"]: r for r in f["trajectory"]}
    assert list(rows) == ["baseline", "iter1", "iter2", "final_automl"]
    for label, row in rows.items():
        v = st["iterations"][label]["metric_result"]["value"]
        assert row["cells"][2] == f"{fmt.num(v)}%" and float(row["values"][2]) == v
    assert [rows[lb]["cells"][2] for lb in rows] == ["8.5%", "4.25%", "1.75%", "2.25%"]
    assert rows["iter2"]["cls"] == "best" and rows["iter1"]["cells"][3] == "-4.25 pp"
    assert float(rows["iter2"]["values"][4]) == st["iterations"]["iter2"]["metric_result"]["threshold"]
    assert f["images"] == 20 and f["svgs"] == 4  # trajectory, growth, 2 AutoML curves
    assert "iter2 stays the deliverable" in f["text"]


@pytest.mark.integration
def test_browser_failed_and_partial_runs(failed, partial, tmp_path):
    page = open_in_browser(failed.results / "DEFT_Loop_Report.html", tmp_path / "failed")
    assert page.facts["bannerKind"] == "stopped"
    assert "Hard stop at iter1/sdg" in page.facts["text"] and "allocation mismatch" in page.facts["text"]
    rows = {r["iteration"]: r for r in page.facts["trajectory"]}
    assert [rows[lb]["cells"][2] for lb in ("baseline", "iter1")] == ["8.5%", "n/a"]
    assert "failed" in rows["iter1"]["cls"] and "failed at sdg" in rows["iter1"]["cells"][-1]
    page = open_in_browser(partial.results / "DEFT_Loop_Report.html", tmp_path / "partial")
    assert page.facts["bannerKind"] == "progress" and "In progress: next iter1/assemble" in page.facts["text"]
    assert page.facts["trajectory"][0]["cells"][2] == "8.5%"


@pytest.mark.integration
def test_browser_hostile_labels_render_as_text(hostile, tmp_path):
    page = open_in_browser(hostile.results / "DEFT_Loop_Report.html", tmp_path)
    assert HOSTILE in page.facts["textContent"] and HOSTILE_ATTR in page.facts["textContent"]


@pytest.mark.integration
def test_browser_check_catches_requests_and_console_errors(tmp_path):
    """The checker itself must see a request and an error (a check that finds nothing proves nothing)."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p>x</p><img src="http://example.invalid/a.png">'
                   '<script>console.error("boom")</script></body></html>')
    page = cdp.inspect(chromium(), bad, tmp_path / "work")
    assert "http://example.invalid/a.png" in page.outside_requests()
    assert any("boom" in e for e in page.console_errors)


# --------------------------------------------------------------------------- the real pipeline


@pytest.mark.slow
@pytest.mark.integration
def test_real_tiny_pipeline_report(tmp_path, script):
    """TODO(issue 7): a genuine tiny run once the workspace generator and the runner land."""
    needed = [SCRIPTS / "make_demo_workspace.py", SCRIPTS / "run_pipeline.py"]
    if not all(p.exists() for p in needed):
        pytest.skip("real pipeline not built yet (make_demo_workspace.py / run_pipeline.py); "
                    "the synthetic runs above cover the report meanwhile")
    ws, results = tmp_path / "ws", tmp_path / "ws" / "results" / "run_test"
    script("make_demo_workspace.py", "--out", str(ws), "--preset", "tiny", check=True)
    script("run_pipeline.py", "--workspace", str(ws), "--results-dir", str(results), "--backend", "local",
           "--max-iterations", "2", "--kpi-target", "FAR < 2% at Recall=100%", "--trials", "4", "--yes", "--quiet",
           check=True, timeout=1800)
    script("render_report.py", "--results-dir", str(results), check=True)
    page = open_in_browser(results / "DEFT_Loop_Report.html", tmp_path / "browser")
    st = deft_state.load(results)
    rows = {r["iteration"]: r for r in page.facts["trajectory"]}
    for label, rec in st["iterations"].items():
        if rec.get("metric_result"):
            assert float(rows[label]["values"][2]) == rec["metric_result"]["value"]


def test_retried_faults_are_listed_in_the_summary(tmp_path, finished):
    """Every ``retry`` event of the log (a job an infrastructure fault ended, run again) is listed
    under the summary, escaped; a run without one shows no such list."""
    assert 'id="faults"' not in (finished.results / "DEFT_Loop_Report.html").read_text()
    b = RunBuilder(tmp_path / "r")
    b.init()
    b.until("iter1", "train")
    for label, text in (("run", "automl phase1 trial 1: docker train job a, attempt 1 of 3: container killed "
                                "(exit 137: out of memory, or killed from outside); retried <b>x</b>"),
                        ("iter1", "slurm requeued train job 42 (node failure); attempt 2 of 3 runs under the same "
                                  "job id")):
        deft_state.log(b.results, label=label, stage=stages.RETRY, status="error", summary=text)
    html = render_text(b.results)
    section = html.split('id="faults"')[1].split("</details>")[0]
    assert "2 infrastructure faults retried" in section and "&lt;b&gt;x&lt;/b&gt;" in section
    assert "container killed (exit 137" in section and "slurm requeued train job 42 (node failure)" in section
