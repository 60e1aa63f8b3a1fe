"""The sections the benchmarks write into docs/PERFORMANCE.md beside
bench/run's report."""

# The headings of the sections other benchmarks own; bench/run keeps them
# when it rewrites the file.
SECTIONS = ("## Expert parallelism", "## Family rules", "## Compiler A/B")


def write_section(path, heading, text):
    """Replaces the section of `path` under `heading` (up to the next '## '
    heading or the end) with `text`, or appends it."""
    old = path.read_text() if path.exists() else ""
    start = old.find(heading)
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = old.find("\n## ", start + len(heading))
    rest = "" if end < 0 else old[end + 1:]
    path.write_text(old[:start] + text + ("\n" + rest if rest else ""))


def kept_sections(path):
    """The other benchmarks' sections of `path`, carried over from its last
    version."""
    if not path.exists():
        return ""
    old = path.read_text()
    kept = ""
    for heading in SECTIONS:
        start = old.find("\n" + heading)
        if start < 0:
            continue
        end = old.find("\n## ", start + 1)
        kept += "\n" + old[start + 1:None if end < 0 else end + 1]
    return kept
