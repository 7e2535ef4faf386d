"""Helpers shared by the benchmarks: table printing and machine-load accounting.

Benchmarks run on a small shared machine (2 cores, oversubscribed), so every
benchmark also reports how much CPU *other* processes used while it ran:
a ratio measured while something else was eating the cores is not worth much.
"""

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def print_table(title, header, rows):
    """Print ``rows`` under ``header`` as a fixed-width, right-aligned table.

    Parameters
    ----------
    title : str
        A line printed above the table.
    header : list of str
        Column names.
    rows : list of list
        Cells; anything ``str()`` can show.
    """
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    print(f"\n{title}")
    for line in [header, ["-" * width for width in widths], *rows]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(line, widths)))


def machine_cpu_seconds():
    """CPU seconds used by every process on the machine since boot (``/proc/stat``).

    Returns
    -------
    float
        user + nice + system + irq + softirq + steal time over all cores.
    """
    with open("/proc/stat", encoding="ascii") as handle:
        fields = handle.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def own_cpu_seconds():
    """CPU seconds (user + system) used by this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_cpu_seconds():
    """CPU seconds of this process's finished children (a job's ranks included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_with_children():
    """CPU seconds of this process and its finished children."""
    return own_cpu_seconds() + children_cpu_seconds()


def process_cpu_seconds(pid):
    """CPU seconds (utime + stime) of process ``pid`` from ``/proc/PID/stat``.

    Returns
    -------
    float or None
        ``None`` if the process is gone.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            text = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class LoadMeter:
    """Started at the beginning of a run; :meth:`line` then says how many
    cores processes outside the run (this process and its children) used."""

    def __init__(self):
        self.machine = machine_cpu_seconds()
        self.own = cpu_with_children()
        self.started = time.perf_counter()

    def line(self):
        """:func:`other_load_line` for the time since construction."""
        return other_load_line(machine_cpu_seconds() - self.machine,
                               cpu_with_children() - self.own,
                               time.perf_counter() - self.started)


def other_load_line(machine_seconds, own_seconds, wall_seconds):
    """A sentence on how many cores processes outside the benchmark used.

    Parameters
    ----------
    machine_seconds : float
        Machine-wide CPU seconds used during the run.
    own_seconds : float
        CPU seconds the benchmark's own processes used during the run.
    wall_seconds : float
        The run's wall-clock duration.
    """
    other = max(0.0, machine_seconds - own_seconds) / wall_seconds
    note = "" if other < 0.25 else "  (the machine was shared: treat ratios with care)"
    return (f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}; "
            f"other processes used {other:.2f} cores during the run{note}")


@dataclass
class JobRun:
    """A finished paracel job: its wall time (launch included), its
    ``metrics.json``, its output folder and the machine's other load."""

    wall: float
    metrics: dict
    output: str
    load: str


def run_paracel(folder, name, job, processes=5, servers=1):
    """Write ``job`` (a job file's keys) as ``folder/name.json``, run it with
    ``processes`` ranks of which ``servers`` serve, output in ``folder/name``;
    stop the benchmark with the job's messages if it fails."""
    job = {"log_level": "warning", "output": os.path.join(folder, name), **job}
    path = os.path.join(folder, f"{name}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(job, handle)
    command = [sys.executable, "-m", "paracel.run", path, "-n", str(processes),
               "--servers", str(servers), "--overwrite"]
    meter = LoadMeter()
    finished = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - meter.started
    if finished.returncode != 0:
        sys.exit(f"the job {name} failed (exit {finished.returncode}):\n"
                 f"{finished.stderr[-3000:]}")
    with open(os.path.join(job["output"], "metrics.json"), encoding="utf-8") as handle:
        return JobRun(wall, json.load(handle), job["output"], meter.line())


DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def markdown_table(header, rows):
    """``rows`` under ``header`` as a GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(str(cell) for cell in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_study(name, title, command, sections, load_line, notes=()):
    """Write ``docs/<name>.md``: a title, the command that made it, tables.

    Parameters
    ----------
    name : str
        File stem, shared with the study's PNG (``docs/<name>.png``).
    title : str
        The page title.
    command : str
        The single command that reproduces the page.
    sections : list of (str, list of str, list of list)
        ``(caption, header, rows)`` per table.
    load_line : str
        How busy the machine was (:func:`other_load_line`).
    notes : sequence of str
        Markdown paragraphs placed between the load line and the tables.

    Returns
    -------
    str
        The path written.
    """
    os.makedirs(DOCS, exist_ok=True)
    parts = [f"# {title}", "", f"Made by `{command}`.", "", load_line, ""]
    for note in notes:
        parts += [note, ""]
    for caption, header, rows in sections:
        parts += [f"**{caption}**", "", markdown_table(header, rows), ""]
    if os.path.exists(os.path.join(DOCS, f"{name}.png")):
        parts += [f"![{title}]({name}.png)", ""]
    path = os.path.join(DOCS, f"{name}.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(parts))
    return path


def pyplot():
    """``matplotlib.pyplot`` drawing to files only (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def result_row(case, data, wall, solve, reference, metric, found, expected, timings, note=""):
    """One paracel-against-reference result, as ``--json`` writes it.

    The toolkit benchmarks share these keys so that ``study_toolkit.py`` can
    read any of them.

    Parameters
    ----------
    case : str
        Which run of the benchmark (e.g. ``"gd-0"``).
    data : str
        The data, in a few words.
    wall, solve, reference : float
        The job's wall seconds (launch included), its ``solve_seconds`` and the
        reference's seconds.
    metric : str
        The name of the quality measure compared.
    found, expected : float
        Its value for the paracel job and for the reference.
    timings : dict
        The ``timings`` of the job's ``metrics.json`` (per-worker solve,
        clock-wait and communication seconds).
    note : str
        The benchmark's own agreement check, in a few words.
    """
    return {"case": case, "data": data, "job_wall_s": wall, "solve_s": solve,
            "reference_s": reference, "metric": metric, "paracel": found,
            "reference": expected, "note": note, "timings": timings}


def write_json(path, rows):
    """Write result rows (:func:`result_row`) to ``path`` as a JSON list."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(rows, handle, indent=1)
