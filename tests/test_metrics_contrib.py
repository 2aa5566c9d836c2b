"""contrib/: the alert rules pass promtool and, like the Grafana dashboard,
query only metrics pmemtrace exports; the systemd units name options that
exist."""

import json
import os
import re
import subprocess

from test_metrics import need_tool

from pmemtrace.metrics import families as fam

CONTRIB = os.path.join(os.path.dirname(__file__), "..", "contrib")
RULES = os.path.join(CONTRIB, "prometheus", "pmemtrace-rules.yml")
DASHBOARD = os.path.join(CONTRIB, "grafana", "pmemtrace-dashboard.json")
#: what the queries may name besides pmemtrace's own series
OTHER_SERIES = {"up", "node_textfile_mtime_seconds", "node_textfile_scrape_error"}


def _series(expr):
    return set(re.findall(r"\b(pmemtrace_[a-z0-9_]+|node_[a-z0-9_]+|up)\b", expr))


def _known():
    return {f.sample_name for f in fam.ALL_FAMILIES} | OTHER_SERIES


def test_rules_pass_promtool():
    r = subprocess.run([need_tool("promtool"), "check", "rules", RULES], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_rules_query_only_exported_metrics():
    text = open(RULES).read()
    exprs = re.findall(r"^\s*expr:\s*(.+)$", text, flags=re.M)
    assert len(exprs) >= 8
    for e in exprs:
        names = _series(e)
        assert names and names <= _known(), (e, names - _known())
    # annotations' own queries too
    assert _series(text) <= _known(), _series(text) - _known()


def test_dashboard_is_json_and_queries_only_exported_metrics():
    d = json.load(open(DASHBOARD))
    exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
    assert len(exprs) == sum(len(p["targets"]) for p in d["panels"]) >= 10
    used = set()
    for e in exprs:
        names = _series(e)
        assert names and names <= _known(), (e, names - _known())
        used |= names
    var = d["templating"]["list"][1]["definition"]
    assert _series(var) <= _known()
    # the core counters are on the dashboard
    assert {"pmemtrace_dax_faults_total", "pmemtrace_dax_pmd_fallbacks_total", "pmemtrace_lost_events_total"} <= used
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))


def test_systemd_units_keep_the_documented_privileges():
    def unit(name):
        out = {}
        for line in open(os.path.join(CONTRIB, "systemd", name)):
            if "=" in line and not line.startswith("#"):
                k, v = line.strip().split("=", 1)
                out[k] = v
        return out

    exporter, diagnose = unit("pmemtrace-exporter.service"), unit("pmemtrace-diagnose.service")
    assert "--prometheus" in exporter["ExecStart"] and "watch" in exporter["ExecStart"]
    assert "--textfile" in diagnose["ExecStart"] and "diagnose" in diagnose["ExecStart"]
    assert "CAP_SYS_ADMIN" not in exporter["CapabilityBoundingSet"]
    assert diagnose["CapabilityBoundingSet"] == "CAP_DAC_READ_SEARCH"
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "metrics.md")).read()
    for cap in exporter["CapabilityBoundingSet"].split():
        assert cap in doc, cap
    # the command lines parse as pmemtrace's (a global option after the subcommand would not)
    from pmemtrace.cli import make_parser

    for u in (exporter, diagnose):
        argv = u["ExecStart"].split()
        assert os.path.basename(argv[0]) == "pmemtrace"
        if "--textfile" in argv:  # the parser checks that the directory exists
            argv[argv.index("--textfile") + 1] = CONTRIB
        args = make_parser().parse_args(argv[1:])
        assert args.quiet == 1 and (args.prometheus or args.textfile), argv
    assert "OnUnitActiveSec" in open(os.path.join(CONTRIB, "systemd", "pmemtrace-diagnose.timer")).read()
