#!/usr/bin/env python3
"""Checks deploy/ against deploy/metrics.txt, the list of every metric inferq exposes.

  check_deploy.py dashboard SOURCE_DIR   deploy/grafana/inferq.json
  check_deploy.py rules SOURCE_DIR       deploy/prometheus/inferq-alerts{,.test}.yml
  check_deploy.py promql SOURCE_DIR      prints the dashboard's expressions as a
                                         rules file, for `promtool check rules`

dashboard: valid JSON in the shape Grafana imports (schemaVersion >= 36,
a prometheus datasource variable used by every panel and query, instance and
queue variables, unique panel ids, grid positions), and every PromQL
expression uses only listed metrics, their labels and listed label values.
rules: the same metric and label checks for the alert expressions and the
unit tests' input series (promtool itself checks syntax and behaviour).
Prints every problem found; exit status 1 if any. Standard library only.
"""
import json
import re
import sys
from pathlib import Path

TARGET_LABELS = {"job", "instance"}
# Series Prometheus itself makes for every target.
BUILTIN = {"up": {}}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "offset", "bool", "inf", "nan"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^{}]*)\}")
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")

problems = []


def problem(where, text):
    problems.append(f"{where}: {text}")


def load_metrics(path):
    """NAME -> {label: set of values or None} for every series name, with
    histogram _bucket/_sum/_count expanded."""
    metrics = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(None, 3)
        if len(fields) < 4 or fields[1] not in ("counter", "gauge", "histogram"):
            problem(f"{path}:{number}", "want NAME TYPE LABELS HELP")
            continue
        name, kind, label_field, _ = fields
        labels = {}
        if label_field != "-":
            for item in label_field.split(","):
                label, _, values = item.partition("=")
                labels[label] = set(values.split("|")) if values else None
        if kind == "counter" and not name.endswith("_total"):
            problem(f"{path}:{number}", f"counter {name} does not end in _total")
        if kind == "histogram":
            metrics[name + "_bucket"] = dict(labels, le=None)
            metrics[name + "_sum"] = labels
            metrics[name + "_count"] = labels
        else:
            metrics[name] = labels
    for name, labels in BUILTIN.items():
        metrics.setdefault(name, labels)
    return metrics


def check_values(where, name, label, op, value, allowed):
    """A literal value (or a|b alternation) of an enumerated label must be listed."""
    if allowed is None or "$" in value or op in ("!=", "!~"):
        return
    if op == "=~":
        if value in (".*", ".+"):
            return
        if not re.fullmatch(r"[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*", value):
            return
        values = value.split("|")
    else:
        values = [value]
    for v in values:
        if v not in allowed:
            problem(where, f'{name}{{{label}="{v}"}}: {label} is one of {sorted(allowed)}')


def check_expr(where, expr, metrics, series=False):
    """Checks one PromQL expression (or one promtool input series)."""
    names = set()
    # Grafana's variables are not PromQL: $__rate_interval, $instance, ${x}.
    text = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*", "V", expr)
    selectors = []
    for m in SELECTOR.finditer(text):
        selectors.append((m.group(1), m.group(2)))
    # What is left once selectors' matchers, ranges and strings are gone.
    rest = SELECTOR.sub(lambda m: (m.group(1) or "") + " ", text)
    rest = re.sub(r"\[[^\]]*\]", " ", rest)
    rest = re.sub(r'"(?:[^"\\]|\\.)*"', " ", rest)
    grouping_labels = set()
    for m in GROUPING.finditer(rest):
        grouping_labels |= {x.strip() for x in m.group(2).split(",") if x.strip()}
    rest = GROUPING.sub(" ", rest)
    for m in IDENT.finditer(rest):
        token = m.group(0)
        after = rest[m.end():].lstrip()
        if token.lower() in KEYWORDS or after.startswith("("):
            continue
        if re.fullmatch(r"[0-9.eE+-]+|V", token) or rest[m.start() - 1:m.start()].isdigit():
            continue
        names.add(token)
    for name, matchers in selectors:
        if name is None:
            name_match = re.search(r'__name__\s*=\s*"([^"]*)"', matchers)
            if not name_match:
                problem(where, f"selector without a metric name: {{{matchers}}}")
                continue
            name = name_match.group(1)
        names.add(name)
        rest_m = matchers.strip()
        pos = 0
        while pos < len(rest_m):
            mm = MATCHER.match(rest_m, pos)
            if not mm:
                problem(where, f"cannot read the matchers of {name}{{{matchers}}}")
                break
            pos = mm.end()
            label, op, value = mm.groups()
            if label == "__name__" or name not in metrics:
                continue
            known = metrics[name]
            if label not in known and label not in TARGET_LABELS:
                problem(where, f"{name} has no label {label} (labels: {sorted(known) + sorted(TARGET_LABELS)})")
                continue
            check_values(where, name, label, op, value, known.get(label))
    if not names:
        problem(where, f"uses no metric: {expr!r}")
    for name in sorted(names):
        if name not in metrics:
            problem(where, f"unknown metric {name} (not in deploy/metrics.txt)")
    if not series:
        available = set(TARGET_LABELS)
        for name in names:
            available |= set(metrics.get(name, {}))
        for label in sorted(grouping_labels - available):
            problem(where, f"groups by {label}, which none of {sorted(names)} has")
    return names


def check_dashboard(source, metrics):
    path = source / "deploy/grafana/inferq.json"
    try:
        dash = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        problem(path, f"not valid JSON: {e}")
        return
    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        if key not in dash:
            problem(path, f"no {key}")
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        problem(path, "schemaVersion must be 36 or later")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problem(path, "needs a variable datasource of type datasource, query prometheus")
    want_ds = {"type": "prometheus", "uid": "${datasource}"}
    for name in ("instance", "queue"):
        v = variables.get(name)
        if not v or v.get("type") != "query":
            problem(path, f"needs a query variable {name}")
            continue
        if v.get("datasource") != want_ds:
            problem(path, f"variable {name}: datasource must be {want_ds}")
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((?:(.*),\s*)?([A-Za-z_][A-Za-z0-9_]*)\)", query or "")
        if not m or not m.group(1):
            problem(path, f"variable {name}: want label_values(SELECTOR, LABEL), got {query!r}")
            continue
        for metric in check_expr(f"{path}: variable {name}", m.group(1), metrics):
            if metric in metrics and m.group(2) not in metrics[metric] and m.group(2) not in TARGET_LABELS:
                problem(path, f"variable {name}: {metric} has no label {m.group(2)}")

    panels = []
    for p in dash.get("panels", []):
        panels.append(p)
        panels.extend(p.get("panels", []))
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)) or None in ids:
        problem(path, f"panel ids must be unique and present: {ids}")
    drawn = 0
    for p in panels:
        where = f"{path}: panel {p.get('id')} {p.get('title')!r}"
        grid = p.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")) or grid.get("x", 0) + grid.get("w", 0) > 24:
            problem(where, f"bad gridPos {grid}")
        if p.get("type") == "row":
            continue
        drawn += 1
        if not p.get("title"):
            problem(where, "no title")
        if p.get("datasource") != want_ds:
            problem(where, f"datasource must be {want_ds}")
        targets = p.get("targets", [])
        if not targets:
            problem(where, "no targets")
        for t in targets:
            if t.get("datasource") != want_ds:
                problem(where, f"target {t.get('refId')}: datasource must be {want_ds}")
            if not t.get("expr"):
                problem(where, f"target {t.get('refId')}: no expr")
                continue
            check_expr(f"{where} target {t.get('refId')}", t["expr"], metrics)
    if drawn == 0:
        problem(path, "no panels")


def rule_exprs(path):
    """(line, expr) of every `expr:` in a rules file, plain or block scalar."""
    lines = path.read_text().splitlines()
    out = []
    i = 0
    while i < len(lines):
        m = re.match(r"(\s*)expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        start, indent, value = i, len(m.group(1)), m.group(2).strip()
        if value not in ("|", "|-", ">", ">-"):
            out.append((start, value.strip("'\"")))
            continue
        body = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            body.append(lines[i])
            i += 1
        out.append((start, "\n".join(body)))
    return out


def check_rules(source, metrics):
    rules = source / "deploy/prometheus/inferq-alerts.yml"
    tests = source / "deploy/prometheus/inferq-alerts.test.yml"
    alerts = re.findall(r"^\s*- alert:\s*(\S+)", rules.read_text(), re.M)
    exprs = rule_exprs(rules)
    if not exprs or len(exprs) != len(alerts):
        problem(rules, f"found {len(alerts)} alerts but {len(exprs)} expressions")
    for line, expr in exprs:
        check_expr(f"{rules}:{line}", expr, metrics)
    text = tests.read_text()
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*-?\s*series:\s*'([^']*)'", line)
        if m:
            check_expr(f"{tests}:{number}", m.group(1), metrics, series=True)
    # Every alert is tested, firing and not firing.
    for alert in alerts:
        blocks = re.findall(rf"alertname:\s*{alert}\s*\n\s*exp_alerts:(.*?)(?=\n\s*- eval_time:|\n\s*- name:|\Z)",
                            text, re.S)
        if not any(b.strip().startswith("[]") for b in blocks):
            problem(tests, f"{alert}: no case where it does not fire (exp_alerts: [])")
        if not any("exp_labels" in b for b in blocks):
            problem(tests, f"{alert}: no case where it fires")


def print_promql(source):
    """The dashboard's expressions as recording rules, Grafana's variables
    replaced by values, so that promtool parses each one."""
    dash = json.loads((source / "deploy/grafana/inferq.json").read_text())
    values = {"$__rate_interval": "5m", "$__interval": "1m", "$instance": ".*", "$queue": ".*"}
    print("groups:\n  - name: dashboard\n    rules:")
    panels = []
    for p in dash["panels"]:
        panels.append(p)
        panels.extend(p.get("panels", []))
    for p in panels:
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            for name, value in values.items():
                expr = expr.replace(name, value)
            print(f"      - record: dashboard:panel{p['id']}:{t.get('refId')}")
            print(f"        expr: {json.dumps(expr)}")


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("dashboard", "rules", "promql"):
        print(__doc__, file=sys.stderr)
        return 2
    source = Path(sys.argv[2])
    if sys.argv[1] == "promql":
        print_promql(source)
        return 0
    metrics = load_metrics(source / "deploy/metrics.txt")
    if sys.argv[1] == "dashboard":
        check_dashboard(source, metrics)
    else:
        check_rules(source, metrics)
    for p in problems:
        print(p)
    print(f"{sys.argv[1]}: {'FAILED, ' + str(len(problems)) + ' problems' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
