"""`fiftyone plugins download` installs the repository as it is.

GitHub serves a repository as a zip whose single top folder holds the tracked files.
This test builds that archive from the checkout, serves it on 127.0.0.1, installs it
with FiftyOne's own downloader into an empty plugins folder, then loads it in a fresh
process with FiftyOne's loader and checks every operator registers without error.
"""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _repo_files():
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [f for f in out.splitlines() if os.path.isfile(os.path.join(ROOT, f))]


@pytest.fixture
def served_archive(tmp_path):
    archive = tmp_path / "serve" / "disagreement-main.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in _repo_files():
            zf.write(os.path.join(ROOT, rel), f"disagreement-main/{rel}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{archive.name}"
    finally:
        server.shutdown()


def test_download_installs_the_plugin_as_it_is(served_archive, tmp_path):
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    code = f"""
import json
import fiftyone as fo
import fiftyone.plugins as fop
fo.config.plugins_dir = {str(plugins_dir)!r}
print(json.dumps(sorted(fop.download_plugin({served_archive!r}))))
"""
    env = {**os.environ, "FIFTYONE_PLUGINS_DIR": str(plugins_dir)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["@multireader/disagreement"]

    # a fresh process, as the App server or a delegated worker would start
    code = """
import json
import fiftyone.plugins as fop
from fiftyone.operators.registry import OperatorRegistry
reg = OperatorRegistry()
print(json.dumps({"errors": reg.list_errors(), "uris": sorted(o.uri for o in reg.list_operators())}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    with open(os.path.join(ROOT, "fiftyone.yml")) as f:
        declared, section = [], None
        for line in f:
            if not line.startswith(" "):
                section = line.split(":")[0].strip()
            elif line.startswith("  - ") and section in ("operators", "panels"):
                declared.append(line.strip()[2:])  # skills are not operators
    assert declared
    for name in declared:
        assert f"@multireader/disagreement/{name}" in result["uris"]
