"""The stand-in's managed-proxy behaviour (tests/e2e/rootfs/usr/local/bin/node, the api-only
block), without Docker: the stand-in's files and Debian's static busybox in a chroot, inside a
network namespace of its own with only loopback, the BUILT claw-cage proxy beside it.

  - `proxy validate` goes through the proxy (CONNECT), never around it: with the proxy down it
    fails while the destination itself still answers directly (the control);
  - an allowed URL passes, an off-list one is refused by the proxy;
  - proxy.enabled with no URL: the gateway refuses to start; OPENCLAW_PROXY_URL supplies one;
    proxy.proxyUrl in the config wins over the variable;
  - a root $include: the gateway's policy gate reads the included openclaw.json.
"""

import json
import os
import shutil
import subprocess

import pytest

from conftest import PYTHON, ROOT, require_root

BUSYBOX = "/bin/busybox"
STANDIN = os.path.join(ROOT, "tests", "e2e", "rootfs")

SCRIPT = r"""
set -e
mount --make-rprivate /
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
ip link set lo up
"$PY" -c '
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a): pass
socketserver.TCPServer(("127.0.0.1", 8080), H).serve_forever()' &
"$PY" "$PYZ" --proxy --config "$T/proxy.json" 2>"$T/proxy.err" &
PROXY=$!
i=0; while ! "$PY" -c 'import socket; socket.create_connection(("127.0.0.1", 3128), 1)' 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 50 ] || exit 9; sleep 0.1; done
node() {  # CONFIG [ENV=V ...] -- ARGS: the stand-in's node, as uid 1000 would run it in /app
  cfg=$1; shift
  timeout 20 chroot "$R" env -i HOME=/home/node PATH=/usr/local/bin:/bin \
      OPENCLAW_CONFIG_PATH=/home/node/.openclaw/$cfg "$@"
}
row() { echo "$1 rc=$2"; }
set +e
out=$(node api.json sh -c 'cd /app && node dist/index.js proxy validate --allowed-url http://127.0.0.1:8080/ --denied-url https://offlist.example/ --json'); row "validate-up $out" $?
out=$(node api.json sh -c 'cd /app && timeout 2 node dist/index.js gateway --bind loopback --port 18999' 2>&1); row "gateway-config-url $(echo $out | head -c 80)" $?
out=$(node nourl.json sh -c 'cd /app && timeout 2 node dist/index.js gateway --bind loopback --port 18999' 2>&1); row "gateway-no-url $(echo $out | head -c 200)" $?
out=$(node nourl.json OPENCLAW_PROXY_URL=http://127.0.0.1:3128 sh -c 'cd /app && node dist/index.js proxy validate --allowed-url http://127.0.0.1:8080/ --json'); row "validate-env $out" $?
out=$(node api.json OPENCLAW_PROXY_URL=http://127.0.0.1:9 sh -c 'cd /app && node dist/index.js proxy validate --allowed-url http://127.0.0.1:8080/ --json'); row "validate-config-wins $out" $?
out=$(node openclaw.json sh -c 'cd /app && node dist/index.js proxy validate --allowed-url http://127.0.0.1:8080/ --json'); row "validate-unconfigured $out" $?
kill $PROXY; wait $PROXY 2>/dev/null
out=$(node api.json sh -c 'cd /app && node dist/index.js proxy validate --allowed-url http://127.0.0.1:8080/ --json'); row "validate-down $out" $?
out=$(node api.json sh -c 'cd /app && node -e JS http http://127.0.0.1:8080/ 2000'); row "direct-control" $?
cat "$T/proxy.log"
"""


def test_standin_sends_egress_through_the_proxy_never_around_it(tmp_path, pyz):
    require_root("a chroot in a network and mount namespace of its own")
    if not os.path.exists(BUSYBOX):
        pytest.fail("busybox-static is not installed (tests/apt-packages.txt)")
    root = tmp_path / "root"
    for d in ("bin", "tmp", "dev", "proc", "app/dist", "home/node/.openclaw"):
        (root / d).mkdir(parents=True)
    shutil.copy2(BUSYBOX, str(root / "bin" / "busybox"))
    subprocess.run(["chroot", str(root), "/bin/busybox", "--install", "-s", "/bin"], check=True)
    shutil.copytree(STANDIN, str(root), dirs_exist_ok=True, symlinks=True)
    (root / "app" / "dist" / "index.js").write_text("// stand-in\n")
    home = root / "home" / "node" / ".openclaw"
    for name in ("openclaw.json", "openclaw.api-only.json"):
        shutil.copy2(os.path.join(ROOT, "deploy", name), str(home / name))
    os.rename(str(home / "openclaw.api-only.json"), str(home / "api.json"))
    # what the installer writes until --firewall routes the keys: openclaw.json alone
    (home / "openclaw.routes.json").write_text('{\n  "$include": "./openclaw.json"\n}\n')
    api = json.loads((home / "api.json").read_text())
    assert api["$include"] == "./openclaw.routes.json"
    del api["proxy"]["proxyUrl"]
    (home / "nourl.json").write_text(json.dumps(api))
    (tmp_path / "proxy.json").write_text(json.dumps({
        "listen": ["127.0.0.1:3128"], "allow": ["127.0.0.1:8080"],
        "ports": [443], "log": str(tmp_path / "proxy.log")}))
    env = dict(os.environ, R=str(root), T=str(tmp_path), PY=PYTHON, PYZ=pyz)
    res = subprocess.run(["unshare", "-n", "-m", "-p", "-f", "sh", "-c", SCRIPT], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=180)
    out = res.stdout
    rows = {ln.split(" ", 1)[0]: ln for ln in out.splitlines() if " rc=" in ln}

    def rc(name):
        assert name in rows, out + res.stderr
        return int(rows[name].rsplit("rc=", 1)[1])

    def js(name):
        return json.loads(rows[name].split(" ", 1)[1].rsplit(" rc=", 1)[0])

    assert rc("validate-up") == 0, out
    checks = js("validate-up")["checks"]
    assert [(c["kind"], c["ok"], c["status"]) for c in checks] == [
        ("allowed", True, "200"), ("denied", True, "proxy-403")], checks
    assert js("validate-up")["config"]["source"] == "config"
    assert rc("gateway-config-url") == 143, out          # started; stopped by timeout
    assert rc("gateway-no-url") != 143 and "no valid proxy URL" in rows["gateway-no-url"], out
    assert rc("validate-env") == 0 and js("validate-env")["config"]["source"] == "env", out
    assert rc("validate-config-wins") == 0, out          # the variable's dead port is not used
    assert rc("validate-unconfigured") == 1 and js("validate-unconfigured")["config"]["errors"]
    # the proxy gone: the stand-in fails, though the destination answers directly (control)
    assert rc("validate-down") == 1 and js("validate-down")["checks"][0]["ok"] is False, out
    assert rc("direct-control") == 0, out
    assert "127.0.0.1:8080 allowed" in out and "offlist.example:443 - refused-403" in out, out
