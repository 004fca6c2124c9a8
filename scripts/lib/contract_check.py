"""The API contract, checked by tools nobody here wrote (scripts/contract-check).

Starts the real control service (the `jitgate` binary) on SQLite with the
development configuration plus the Slack and callback integrations, so that
every route is in the document it serves at /openapi.json, and with audit
checkpoints signed after every record (so the proof routes answer proofs),
then:

1. Schemathesis, with every check, the examples, coverage, fuzzing and
   stateful phases (the last follows the document's links), once per role:
   requester, approver, auditor/admin (people's bearer JWTs) and proxy (the
   ingest key). Fixed seed, bounded time; any failure fails the run.
2. A Python client generated from the same document by
   openapi-python-client, driving the README's flow: request, approve,
   fetch the grant, revoke, read the audit trail.

Usage: contract_check.py JITGATE_BINARY   (run from the repository root)
Environment: JITGATE_CHECK_SEED (default 20261202), JITGATE_CHECK_SECONDS
(per role, default 30).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
SEED = os.environ.get("JITGATE_CHECK_SEED", "20261202")
SECONDS = os.environ.get("JITGATE_CHECK_SECONDS", "30")
INGEST_KEY = "dev-ingest-key-0123456789"
INTEGRATIONS = (
    "[integrations]\n"
    'slack_signing_secret = { value = "contract-check-slack-secret-0123456789" }\n'
    'callback_secret = { value = "contract-check-callback-secret-0123456789" }\n\n'
)


def say(message):
    print(f"==> {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Control:
    """The control service in a temporary directory, stopped on exit."""

    def __init__(self, binary, work):
        self.binary = binary
        self.work = work
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        with open(os.path.join(ROOT, "control/examples/jitgate.toml")) as f:
            config = f.read().replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        at = config.index("[grants]")
        config = config[:at] + INTEGRATIONS + config[at:]
        # Signed audit checkpoints after every record, so that the proof
        # routes answer proofs (not only `checkpoint_not_found`).
        keys = subprocess.run(
            [binary, "audit", "keygen", "--name", "contract.check/audit"], check=True, capture_output=True, text=True
        ).stdout
        private = next(line for line in keys.splitlines() if line.startswith("PRIVATE+KEY+"))
        config += (
            f'\n[audit]\nsigning_key = {{ value = "{private}" }}\n'
            "checkpoint_every_records = 1\ncheckpoint_every_seconds = 1\n"
        )
        self.config = os.path.join(work, "jitgate.toml")
        with open(self.config, "w") as f:
            f.write(config)
        self.log = open(os.path.join(work, "control.log"), "w")
        self.process = subprocess.Popen(
            [binary, "serve", "--config", self.config], cwd=work, stdout=self.log, stderr=self.log
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        self.stop()
        sys.exit(f"error: the control service did not start; see {self.log.name}")

    def token(self, user, groups):
        out = subprocess.run(
            [self.binary, "dev-token", "--config", self.config, "--sub", user, "--groups", groups],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def call(self, method, path, token, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        req.add_header("authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def request_access(control, token, reason):
    status, body = control.call(
        "POST",
        "/v1/requests",
        token,
        {
            "resource": "payments-api",
            "scope": [{"methods": ["GET"], "paths": ["/v1/invoices/*"]}],
            "duration_seconds": 1800,
            "reason": reason,
        },
    )
    assert status == 201, (status, body)
    return body["id"]


def schemathesis(control, work, role, auth, ids, include, phases):
    """One role's run; returns its summary counts, exits on failure."""
    out_path = os.path.join(work, f"schemathesis-{role}.txt")
    command = [
        os.path.join(VENV_BIN, "schemathesis"),
        "--config-file",
        os.path.join(ROOT, "scripts/lib/schemathesis.toml"),
        "run",
        f"{control.base}/openapi.json",
        "--checks",
        "all",
        "--phases",
        phases,
        "--seed",
        SEED,
        "--max-time",
        SECONDS,
        "--workers",
        "1",
        "-H",
        f"Authorization: Bearer {auth}",
        *include,
    ]
    env = dict(os.environ, JITGATE_CHECK_REQUEST_ID=ids[0], JITGATE_CHECK_GRANT_ID=ids[1], NO_COLOR="1")
    shown = " ".join("Authorization: Bearer ***" if a.startswith("Authorization:") else a for a in command[1:])
    say(f"schemathesis as {role}: {shown}")
    with open(out_path, "w") as out:
        result = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    text = open(out_path).read()
    counts = {
        "cases": re.search(r"(\d+) generated", text),
        "operations": re.search(r"Tested: (\d+)", text),
        "selected": re.search(r"Selected: (\d+)/(\d+)", text),
        "links": re.search(r"API Links:\s+(\d+) covered / (\d+) selected", text),
        "stateful": re.search(r"Scenarios:\s+(\d+)", text),
    }
    summary = {k: (m.groups() if m else None) for k, m in counts.items()}
    if result.returncode != 0:
        print(text[-12000:])
        sys.exit(f"error: schemathesis found failures as {role} (seed {SEED}); full output in {out_path}")
    links = summary["links"] or ("0", "0")
    print(
        f"    {role}: {summary['cases'][0] if summary['cases'] else '?'} cases, "
        f"{summary['operations'][0] if summary['operations'] else '?'} operations tested "
        f"(of {summary['selected'][0] if summary['selected'] else '?'} selected), "
        f"{summary['stateful'][0] if summary['stateful'] else '0'} stateful scenarios, "
        f"links {links[0]} covered of {links[1]}, no failures",
        flush=True,
    )
    return summary


def generated_client_flow(control, work, tokens):
    """The README's flow through a client generated from the document."""
    say("generating a Python client from /openapi.json (openapi-python-client)")
    with urllib.request.urlopen(f"{control.base}/openapi.json") as r:
        document = r.read()
    doc_path = os.path.join(work, "openapi.json")
    with open(doc_path, "wb") as f:
        f.write(document)
    out_dir = os.path.join(work, "client")
    # No post-generation formatting hooks: the generated code is imported,
    # never read, and ruff is not a dependency here.
    generator_config = os.path.join(work, "generator.json")
    with open(generator_config, "w") as f:
        json.dump({"post_hooks": [], "project_name_override": "client", "package_name_override": "client"}, f)
    generated = subprocess.run(
        [
            os.path.join(VENV_BIN, "openapi-python-client"),
            "generate",
            "--path",
            doc_path,
            "--output-path",
            out_dir,
            "--meta",
            "none",
            "--config",
            generator_config,
        ],
        capture_output=True,
        text=True,
        cwd=work,
    )
    print(generated.stdout + generated.stderr, flush=True)
    # Every operation must generate, except the export: a JSON-lines stream,
    # which the generator cannot represent (it warns and leaves it out).
    warnings = [
        line
        for line in (generated.stdout + generated.stderr).splitlines()
        if line.startswith("WARNING") and "GET /v1/audit/export" not in line
    ]
    if generated.returncode != 0 or warnings:
        sys.exit(f"error: the client generator did not accept the document: {warnings}")
    sys.path.insert(0, work)
    package = os.path.basename(out_dir)
    client_mod = __import__(f"{package}.client", fromlist=["AuthenticatedClient"])
    api = __import__(f"{package}.api", fromlist=["requests", "grants", "audit"])
    models = __import__(f"{package}.models", fromlist=["NewRequest", "Rule", "Revoke", "Decision"])
    from importlib import import_module

    def op(tag, name):
        return import_module(f"{package}.api.{tag}.{name}")

    def as_user(user):
        return client_mod.AuthenticatedClient(base_url=control.base, token=tokens[user], raise_on_unexpected_status=True)

    alice, bob, ada = as_user("alice"), as_user("bob"), as_user("ada")

    def expect(result, model):
        # Documented errors come back as Problem objects: show them.
        assert isinstance(result, model), f"expected {model.__name__}, got {result!r}"
        return result

    say("generated client: request, approve, fetch the grant, revoke, audit")
    created = expect(
        op("requests", "create_request").sync(
            client=alice,
            body=models.NewRequest(
                resource=models.NewRequestResource("payments-api"),
                scope=[models.Rule(methods=["GET"], paths=["/v1/invoices/*"])],
                duration_seconds=1800,
                reason="INC-7: reconcile invoices",
                ticket="INC-7",
            ),
        ),
        models.AccessRequest,
    )
    assert created.state == models.RequestState.PENDING, created
    approved = expect(
        op("requests", "approve_request").sync(id=created.id, client=bob, body=models.Decision(comment="ok")),
        models.AccessRequest,
    )
    assert approved.state == models.RequestState.APPROVED, approved
    token = expect(op("grants", "fetch_grant").sync(id=created.id, client=alice), models.TokenResponse)
    assert token.token.count(".") == 2 and token.grant_id, token
    revoked = expect(
        op("grants", "revoke_grant").sync(id=token.grant_id, client=bob, body=models.Revoke(reason="done")),
        models.Revocation,
    )
    assert revoked.already_revoked is False and revoked.revoked_by == "bob", revoked
    # One request answers with the preview of its scope (none: the example
    # configuration names no OpenAPI document for payments-api).
    again = expect(op("requests", "get_request").sync(id=created.id, client=alice), models.RequestDetail)
    assert again.state == models.RequestState.REVOKED and again.preview is None, again
    trail = op("audit", "query_audit").sync(client=ada, request_id=created.id)
    assert isinstance(trail, list), trail
    actions = [expect(r, models.Record).action for r in trail]
    for expected in ["request.created", "vote.approve", "grant.issued", "grant.token_fetched", "grant.revoked"]:
        assert expected in actions, (expected, actions)
    verified = expect(op("audit", "verify_audit").sync(client=ada), models.Verification)
    assert verified.ok, verified
    print(f"    generated client: {len(actions)} audit records for {created.id}, chain intact", flush=True)


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="jitgate-contract-")
    control = Control(binary, work)
    try:
        tokens = {
            "alice": control.token("alice", "dev"),
            "bob": control.token("bob", "payments-approvers"),
            "ada": control.token("ada", "jit-admins,auditors"),
        }
        # Records the runs work on: a pending request for each people role,
        # and a grant (approved by bob) to revoke.
        granted = request_access(control, tokens["alice"], "contract check: a grant")
        status, body = control.call("POST", f"/v1/requests/{granted}/approve", tokens["bob"], {})
        assert status == 200, (status, body)
        grant = body["grant"]["id"]
        people = ["--exclude-tag", "proxies"]
        every_phase = "examples,coverage,fuzzing,stateful"
        # The proxies' operations link to nothing (each stands alone), so
        # their run has no stateful phase.
        runs = [
            ("requester", tokens["alice"], people, every_phase),
            ("approver", tokens["bob"], people, every_phase),
            ("auditor-admin", tokens["ada"], people, every_phase),
            ("proxy", INGEST_KEY, ["--include-tag", "proxies"], "examples,coverage,fuzzing"),
        ]
        say(f"Schemathesis {SECONDS}s per role, seed {SEED}, against {control.base} (SQLite)")
        for role, auth, include, phases in runs:
            pending = request_access(control, tokens["alice"], f"contract check: {role}")
            schemathesis(control, work, role, auth, (pending, grant), include, phases)
        generated_client_flow(control, work, tokens)
    finally:
        control.stop()
    shutil.rmtree(work, ignore_errors=True)
    print("contract: 2 passed, 0 failed", flush=True)


if __name__ == "__main__":
    main()
